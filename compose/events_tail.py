"""Follow the nodes' event logs while a run is in progress.

The runner's wait steps are conditions over what nodes have reported so far; this
reads only new bytes from each log on every poll.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class EventTail:
    def __init__(self, events_dir: Path) -> None:
        self.events_dir = events_dir
        self.events: dict[str, list[dict[str, Any]]] = {}
        self._offsets: dict[str, int] = {}
        self._partial: dict[str, bytes] = {}

    def poll(self) -> None:
        for path in self.events_dir.glob("*.jsonl"):
            node = path.stem
            with open(path, "rb") as fh:
                fh.seek(self._offsets.get(node, 0))
                data = self._partial.get(node, b"") + fh.read()
                self._offsets[node] = fh.tell()
            *complete, rest = data.split(b"\n")
            self._partial[node] = rest
            bucket = self.events.setdefault(node, [])
            bucket.extend(json.loads(line) for line in complete if line.strip())

    def of(self, node: str, type_: str | None = None) -> list[dict[str, Any]]:
        events = self.events.get(node, [])
        return events if type_ is None else [e for e in events if e["type"] == type_]

    def last(self, node: str, type_: str) -> dict[str, Any] | None:
        found = self.of(node, type_)
        return found[-1] if found else None

    def open_connections(self, node: str, peer_id: str) -> list[dict[str, Any]]:
        """Connections from ``node`` to ``peer_id`` that are open now (opened, not closed)."""
        open_: list[dict[str, Any]] = []
        for event in self.of(node):
            if event.get("peer") != peer_id:
                continue
            if event["type"] == "connection_opened":
                open_.append(event)
            elif event["type"] == "connection_closed":
                for i, opened in enumerate(open_):
                    if (opened["remote_addr"], opened["kind"]) == (event["remote_addr"], event["kind"]):
                        del open_[i]
                        break
        return open_
