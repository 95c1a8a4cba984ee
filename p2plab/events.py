"""The one event format: JSON lines written by real nodes (and later the simulator).

Every line is an envelope ``{"v", "t", "node", "type", ...fields}``. ``t`` is the host
clock in seconds since the epoch, so latency between nodes on one host is a plain
subtraction. Analysis reads only this format and never knows which backend ran.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

SCHEMA_VERSION = 1

# Required fields per event type (beyond the envelope). Extra fields are allowed.
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "node_started": ("peer_id", "listen_addrs", "announced_addrs", "role", "topic"),
    "node_stopped": ("reason",),
    "peer_discovered": ("peer", "via", "addrs"),
    "dial": ("target", "outcome", "elapsed_ms", "reason"),
    "connection_opened": ("peer", "remote_addr", "kind", "transport", "direction"),
    "connection_closed": ("peer", "remote_addr", "kind", "transport", "direction"),
    "relay_reservation": ("relay", "outcome", "elapsed_ms", "reason"),
    "hole_punch": ("peer", "attempt", "outcome", "elapsed_ms", "reason", "transport"),
    # A relay hop's reservations and circuits: accepted, denied, closed (and why).
    "relay_hop": ("action", "src_peer", "dst_peer", "reason"),
    "topic_peers": ("topic", "peers"),
    "message_published": ("msg_id", "origin", "seq", "size", "topic"),
    "message_received": ("msg_id", "origin", "seq", "size", "topic"),
    "ping": ("peer", "rtt_ms", "outcome", "reason"),
    "command": ("cmd", "outcome", "reason"),
    # Written by the lab itself (node "_lab"): what the timeline did to the network.
    "fault": ("action", "targets"),
    "traffic": ("flow", "publishers", "count", "topic"),
    # Once a second: cumulative CPU seconds per lab process, the host's CPU split.
    "cpu": ("cores", "host", "cpu_s"),
}

ENVELOPE = ("v", "t", "node", "type")


class EventFormatError(ValueError):
    """A line that is not a valid event of this schema version."""


def validate_event(event: dict[str, Any]) -> None:
    """Raise EventFormatError unless ``event`` matches the schema."""
    for key in ENVELOPE:
        if key not in event:
            raise EventFormatError(f"event lacks envelope field {key!r}: {event}")
    if event["v"] != SCHEMA_VERSION:
        raise EventFormatError(
            f"event schema version {event['v']} is not {SCHEMA_VERSION}: {event}"
        )
    required = EVENT_FIELDS.get(event["type"])
    if required is None:
        raise EventFormatError(f"unknown event type {event['type']!r}")
    missing = [f for f in required if f not in event]
    if missing:
        raise EventFormatError(f"{event['type']} event lacks {missing}: {event}")


class EventWriter:
    """Appends validated events to a JSON-lines file, flushed line by line.

    Flushing every line costs little at chat rates and means a node killed with
    SIGKILL still leaves a readable log up to its last event.
    """

    def __init__(self, node: str, stream: IO[str]) -> None:
        self.node = node
        self._stream = stream

    @classmethod
    def open(cls, node: str, path: Path) -> EventWriter:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(node, open(path, "a", encoding="utf-8", buffering=1))

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = {"v": SCHEMA_VERSION, "t": time.time(), "node": self.node, "type": type_}
        event.update(fields)
        validate_event(event)
        self._stream.write(json.dumps(event, separators=(",", ":")) + "\n")
        return event

    def close(self) -> None:
        self._stream.flush()
        self._stream.close()


def parse_line(line: str | bytes, where: str, torn: list[str] | None = None
               ) -> dict[str, Any] | None:
    """One line of a log as a validated event, or None for a blank line or a torn
    fragment with no whole event after it.

    A writer killed mid-line leaves a fragment; if the node was restarted, its next
    event is appended to that fragment on the same line. Such a line yields the
    complete event at its end (if any) and the fragment is dropped; each one is noted
    in ``torn`` (``where``, a file:line) so the report can say so. A line that parses but
    breaks the schema is a producer's bug, not tearing, and raises EventFormatError.
    Every reader of event logs (analysis, the live tail, kept labs) reads lines here."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    if not line.strip():
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        if torn is not None:
            torn.append(where)
        event = _complete_tail(line)
        if event is None:
            return None
    if not isinstance(event, dict):
        raise EventFormatError(f"{where}: not an event object")
    try:
        validate_event(event)
    except EventFormatError as exc:
        raise EventFormatError(f"{where}: {exc}") from exc
    return event


def read_events(path: Path, torn: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Yield validated events from one log, reading past torn lines (``parse_line``)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = fh.readlines()
    for number, line in enumerate(lines, start=1):
        event = parse_line(line, f"{path.name}:{number}", torn)
        if event is not None:
            yield event


def _complete_tail(line: str) -> dict[str, Any] | None:
    """The whole event at the end of a line that starts with a torn fragment: the
    leftmost object after the fragment that parses to the end of the line (keys in any
    order: a node's writer need not put ``"v"`` first)."""
    start = line.find('{"', 1)
    while start > 0:
        try:
            event = json.loads(line[start:])
            if isinstance(event, dict) and "v" in event:
                return event
        except json.JSONDecodeError:
            pass
        start = line.find('{"', start + 1)
    return None
