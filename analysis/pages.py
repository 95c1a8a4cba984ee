"""HTML pages from Jinja2 templates (``analysis/templates``), autoescaped: every value a
scenario or a node wrote (names, descriptions, failure reasons) is escaped by the
engine, not field by field."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

_ENV = Environment(loader=PackageLoader("p2plab.analysis", "templates"),
                   autoescape=select_autoescape(["html", "j2"]),
                   undefined=StrictUndefined, keep_trailing_newline=True)


def render_page(template: str, **values: Any) -> str:
    return _ENV.get_template(template).render(**values)
