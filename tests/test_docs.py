"""The documentation keeps up with the code: every setting is described and in the
generated table, the README stays short and its links resolve, every page is in the
site's navigation. Fast, and needs no service; `mkdocs build --strict` checks the rest."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import Field

from webhooks.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"


def _hook(name: str) -> ModuleType:
    """A module of docs/hooks/, loaded from its file as MkDocs loads it: docs/ is not
    a package."""
    spec = importlib.util.spec_from_file_location(
        f"docs_hooks_{name}", DOCS / "hooks" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


settings_table = _hook("settings_table")


def test_every_setting_has_a_description() -> None:
    missing = [
        name
        for name, field in Settings.model_fields.items()
        if not (field.description and field.description.strip())
    ]
    assert not missing, f"give these Settings fields a description=...: {missing}"


def test_every_setting_is_in_the_generated_table() -> None:
    table: str = settings_table.settings_table()
    documented: set[str] = settings_table.documented_settings()
    for name in Settings.model_fields:
        variable = f"WEBHOOKS_{name.upper()}"
        assert variable in documented, variable
        assert f"| `{variable}` |" in table, variable
    assert len(table.splitlines()) == 2 + len(Settings.model_fields)


def test_a_setting_without_a_description_fails_the_table() -> None:
    class Undocumented(Settings):
        new_knob: int = 3
        described_knob: int = Field(4, description="Has one.")

    with pytest.raises(ValueError, match="WEBHOOKS_NEW_KNOB"):
        settings_table.settings_table(Undocumented)
    assert "WEBHOOKS_DESCRIBED_KNOB" in settings_table.documented_settings(Undocumented)


def test_defaults_are_shown_as_an_operator_writes_them() -> None:
    rows = {
        line.split(" | ")[0].strip("| `"): line.split(" | ")[1]
        for line in settings_table.settings_table().splitlines()[2:]
    }
    assert rows["WEBHOOKS_REDIS_URL"] == "`redis://localhost:6379/0`"
    assert rows["WEBHOOKS_API_TOKEN"] == "unset"  # a secret, never a value
    assert rows["WEBHOOKS_ALLOWED_NETWORKS"] == "empty"
    assert rows["WEBHOOKS_HTTPS_ONLY"] == "`false`"
    assert rows["WEBHOOKS_TIMEOUT_SECONDS"] == "`15`"


def test_the_settings_page_has_its_marker() -> None:
    page = (DOCS / settings_table.PAGE).read_text()
    assert settings_table.MARKER in page


def test_sphinx_roles_and_drawn_trees_are_tidied() -> None:
    docstrings = _hook("docstrings")
    html = (
        "<p>Raises :class:<code>~webhooks.InvalidInput</code> or :func:<code>verify</code>.</p>"
        "<p>WebhooksError\n├── InvalidInput</p>"
    )
    assert docstrings.tidy_docstrings(html) == (
        "<p>Raises <code>InvalidInput</code> or <code>verify</code>.</p>"
        "<pre><code>WebhooksError\n├── InvalidInput</code></pre>"
    )


def test_readme_is_short() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= 250, f"README.md has {lines} lines; move detail to a page under docs/"


def _relative_links(markdown: str) -> list[str]:
    """Targets of inline links and images and of reference definitions, outside code."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text)
    targets += re.findall(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", text, flags=re.MULTILINE)
    return [
        target
        for target in targets
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.IGNORECASE)
        and not target.startswith("#")
    ]


def test_readme_links_resolve() -> None:
    links = _relative_links(README.read_text())
    assert links, "the README links to the documentation"
    broken = [link for link in links if not (ROOT / link.split("#", 1)[0]).exists()]
    assert not broken, f"README.md links to files that do not exist: {broken}"


def test_every_page_is_in_the_navigation() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    in_nav = set(re.findall(r"^\s*-\s*(?:[^:\n]+:\s*)?(\S+\.md)\s*$", config, flags=re.MULTILINE))
    pages = {
        path.relative_to(DOCS).as_posix()
        for path in DOCS.rglob("*.md")
        if "hooks" not in path.relative_to(DOCS).parts
    }
    assert pages - in_nav == set(), "add these pages to nav: in mkdocs.yml"
    assert in_nav - pages == set(), "nav: in mkdocs.yml names pages that do not exist"
