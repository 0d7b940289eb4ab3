"""MkDocs hook: two touches to the Python API page, whose docstrings are reStructuredText
in places while mkdocstrings reads them as Markdown.

- A Sphinx role before a code span (``:class:`Retry```, ``:func:`~webhooks.verify```)
  would show as the literal text ``:class:``; the role is dropped, and ``~`` keeps only
  the last part of the name, as Sphinx does.
- A paragraph that draws a tree with box-drawing characters (the exception hierarchy
  in ``webhooks.errors``) is shown preformatted, so its columns line up.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mkdocs.structure.pages import Page

PAGE = "reference/python-api.md"

__all__ = ["on_page_content", "tidy_docstrings"]

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj):<code>(~?)([^<]*)</code>")
_TREE = re.compile(r"<p>([^<]*[├└][^<]*)</p>")


def _role(match: re.Match[str]) -> str:
    tilde, name = match.groups()
    return f"<code>{name.rsplit('.', 1)[-1] if tilde else name}</code>"


def tidy_docstrings(html: str) -> str:
    """The page's HTML with Sphinx roles dropped and drawn trees preformatted."""
    html = _ROLE.sub(_role, html)
    return _TREE.sub(r"<pre><code>\1</code></pre>", html)


def on_page_content(html: str, page: Page, **kwargs: Any) -> str:
    """MkDocs event: tidy the Python API page once mkdocstrings has rendered it."""
    if page.file.src_uri != PAGE:
        return html
    return tidy_docstrings(html)
