"""Follow the nodes' event logs while a run is in progress.

The runner's wait steps are conditions over what nodes have reported so far; this
reads only new bytes from each log on every poll (the files stay open), and indexes
events by node and type as they arrive, so a condition over hundreds of nodes polled
ten times a second costs little (a rescan per query made the runner the busiest
process of a 200-node lab).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import IO, Any

from p2plab.events import parse_line


class EventTail:
    def __init__(self, events_dir: Path) -> None:
        self.events_dir = events_dir
        self.events: dict[str, list[dict[str, Any]]] = {}
        self._by_type: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._files: dict[str, IO[bytes]] = {}
        self._partial: dict[str, bytes] = {}
        self._offsets: dict[str, int] = {}
        self._lines: dict[str, int] = {}  # complete lines read so far, per log
        self.torn: list[str] = []  # file:line of torn lines read past, as analysis notes
        self.received = 0  # message_received events read so far, all nodes
        self._next_scan = 0.0

    def poll(self) -> None:
        now = time.monotonic()
        if now >= self._next_scan:  # new logs appear as nodes start: look once a second
            self._next_scan = now + 1.0
            for path in self.events_dir.glob("*.jsonl"):
                if path.stem not in self._files:
                    opened = open(path, "rb")
                    opened.seek(self._offsets.get(path.stem, 0))  # reopened after close()
                    self._files[path.stem] = opened
        for node, fh in self._files.items():
            chunk = fh.read()
            if not chunk:
                continue
            *complete, rest = (self._partial.get(node, b"") + chunk).split(b"\n")
            self._partial[node] = rest
            bucket = self.events.setdefault(node, [])
            for line in complete:
                number = self._lines.get(node, 0) + 1
                self._lines[node] = number
                event = parse_line(line, f"{node}.jsonl:{number}", self.torn)
                if event is not None:
                    bucket.append(event)
                    self.received += event["type"] == "message_received"
                    self._by_type.setdefault((node, event["type"]), []).append(event)

    def close(self) -> None:
        """Release the files; a later poll reopens them where reading stopped."""
        for node, fh in self._files.items():
            self._offsets[node] = fh.tell()
            fh.close()
        self._files.clear()

    def of(self, node: str, type_: str | None = None) -> list[dict[str, Any]]:
        if type_ is None:
            return self.events.get(node, [])
        return self._by_type.get((node, type_), [])

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
                    if (opened["remote_addr"], opened["kind"]) == (event["remote_addr"],
                                                                   event["kind"]):
                        del open_[i]
                        break
        return open_
