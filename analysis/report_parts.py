"""The pieces a report section is made of (paragraphs, bullet lists, tables), apart from
what any section says, so every module that writes a section can build one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class Block:
    """One piece of a section, in order: a paragraph, a bullet list or a table."""

    text: str = ""
    bullets: list[str] = field(default_factory=list)
    table: Table | None = None


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def paragraph(self, text: str) -> Section:
        self.blocks.append(Block(text=text))
        return self

    def bullets(self, items: list[str]) -> Section:
        if items:
            self.blocks.append(Block(bullets=items))
        return self

    def table(self, columns: list[str], rows: list[list[Any]]) -> Section:
        self.blocks.append(Block(table=Table(columns, rows)))
        return self
