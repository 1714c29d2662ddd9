"""MkDocs hooks. The recipe key reference is written into reference.md at build time from
the schema and the registries (hyperzsl.recipe.reference), so the keys are described in
one place, beside the fields in hyperzsl/recipe/schema.py. The docstrings the API page
renders use reST roles (:mod:`x`); the roles are dropped so that `x` reads as code."""
from __future__ import annotations

import re

MARKER = "<!-- recipe-reference -->"
ROLE = re.compile(r":(?:mod|class|func|data|attr|meth|obj):(?=<code)")


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    from hyperzsl.recipe.reference import render_markdown
    return markdown.replace(MARKER, render_markdown(heading_level=2))


def on_page_content(html: str, page, config, files) -> str:
    return ROLE.sub("", html)
