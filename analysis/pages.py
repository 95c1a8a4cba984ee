"""Pages from Jinja2 templates (``analysis/templates``). HTML is autoescaped: every value
a scenario or a node wrote (names, descriptions, failure reasons) is escaped by the
engine, not field by field; in Markdown, table cells go through ``cell``."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

_ENV = Environment(loader=PackageLoader("p2plab.analysis", "templates"),
                   autoescape=select_autoescape(["html", "html.j2"], default=False),
                   undefined=StrictUndefined, keep_trailing_newline=True)


def markdown_cell(value: Any) -> str:
    """A value as one Markdown table cell: a ``|`` or a line break would end it."""
    return str(value).replace("|", "\\|").replace("\n", " ")


_ENV.filters["cell"] = markdown_cell


def render_page(template: str, **values: Any) -> str:
    return _ENV.get_template(template).render(**values)
