"""MkDocs hook: the settings reference, generated from ``webhooks.settings.Settings``.

``docs/reference/settings.md`` holds the marker ``<!-- settings-table -->``; at build
time it becomes a Markdown table with one row per field of ``Settings``: the
environment variable, its default and the field's description. The fields are read
from ``Settings.model_fields``; ``Settings`` is never instantiated, since that would
read this machine's environment into the page.

``settings_table`` refuses a field without a description, so a setting added without
documentation fails the build (``mkdocs build --strict``) and ``tests/test_docs.py``.
"""

from __future__ import annotations

import re
import sys
import typing
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

if TYPE_CHECKING:
    from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[2]
# The `mkdocs` command's sys.path does not hold the checkout: without this, the table
# would describe whichever checkout the virtualenv installed in editable mode.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from webhooks.settings import Settings  # noqa: E402

MARKER = "<!-- settings-table -->"
PAGE = "reference/settings.md"

__all__ = ["MARKER", "documented_settings", "env_name", "on_page_markdown", "settings_table"]


def env_name(name: str, field: FieldInfo, settings: type[Settings] = Settings) -> str:
    """The environment variable a field is read from: the prefix and the upper-cased name,
    or the field's own alias when it has one."""
    alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
    if alias:
        return alias.upper()
    prefix = str(settings.model_config.get("env_prefix", ""))
    return f"{prefix}{name}".upper()


def _is_secret(annotation: Any) -> bool:
    """Whether a field's type is, or includes, ``SecretStr`` (``SecretStr | None``)."""
    if annotation is SecretStr:
        return True
    return any(_is_secret(arg) for arg in typing.get_args(annotation))


def _default(field: FieldInfo) -> str:
    """The default as an operator would write it in the environment."""
    if field.default_factory is not None:
        return "computed"
    value: Any = field.default
    if value is PydanticUndefined:
        return "required"
    if value is None or _is_secret(field.annotation):
        return "unset"
    if isinstance(value, tuple | list | set | frozenset | dict) and not value:
        return "empty"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, Enum):
        text = str(value.value)
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    elif isinstance(value, tuple | list | set | frozenset):
        text = ",".join(str(item) for item in value)
    else:
        text = str(value)
    return f"`{text}`"


_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)


def _plain(text: str) -> str:
    """Prose outside code spans, with nothing that would end the cell, start emphasis or
    open an HTML tag: ``base * 2**n`` stays as written."""
    return re.sub(r"([\\|*_])", r"\\\1", text).replace("<", "&lt;")


def _cell(text: str) -> str:
    """Text made safe for one Markdown table cell: one line, code spans kept as they are."""
    text = " ".join(text.split())
    parts, last = [], 0
    for match in _CODE_SPAN.finditer(text):
        parts.append(_plain(text[last : match.start()]))
        parts.append(match.group(0))
        last = match.end()
    parts.append(_plain(text[last:]))
    return "".join(parts)


def documented_settings(settings: type[Settings] = Settings) -> set[str]:
    """The environment variables of the fields that have a non-empty description."""
    return {
        env_name(name, field, settings)
        for name, field in settings.model_fields.items()
        if field.description and field.description.strip()
    }


def settings_table(settings: type[Settings] = Settings) -> str:
    """The Markdown table of every field of ``settings``, in the order of the class.

    Raises ``ValueError`` naming every field without a description.
    """
    fields = settings.model_fields
    undocumented = sorted(
        env_name(name, field, settings)
        for name, field in fields.items()
        if env_name(name, field, settings) not in documented_settings(settings)
    )
    if undocumented:
        raise ValueError(
            "settings without a description (give each Field a description=...): "
            + ", ".join(undocumented)
        )
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in fields.items():
        rows.append(
            f"| `{env_name(name, field, settings)}` | {_default(field)} "
            f"| {_cell(field.description or '')} |"
        )
    return "\n".join(rows)


def on_page_markdown(markdown: str, page: Page, **kwargs: Any) -> str:
    """MkDocs event: put the table in place of the marker on the settings page."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} has lost its {MARKER} marker")
    return markdown.replace(MARKER, settings_table())
