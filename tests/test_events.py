"""The event format: one schema, validated on write and on read."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from p2plab.events import SCHEMA_VERSION, EventFormatError, EventWriter, read_events, validate_event

pytestmark = pytest.mark.quick


def test_writer_emits_versioned_envelope(tmp_path: Path) -> None:
    path = tmp_path / "events" / "a.jsonl"
    writer = EventWriter.open("a", path)
    writer.emit("ping", peer="P", rtt_ms=1.5, outcome="ok", reason="")
    writer.close()
    (event,) = list(read_events(path))
    assert event["v"] == SCHEMA_VERSION and event["node"] == "a" and event["type"] == "ping"
    assert isinstance(event["t"], float)


def test_writer_refuses_an_incomplete_event() -> None:
    writer = EventWriter("a", io.StringIO())
    with pytest.raises(EventFormatError, match="lacks"):
        writer.emit("message_received", msg_id="x")


@pytest.mark.parametrize("event, words", [
    ({"v": 1, "t": 0, "node": "a"}, "envelope"),
    ({"v": 99, "t": 0, "node": "a", "type": "ping"}, "schema version"),
    ({"v": 1, "t": 0, "node": "a", "type": "teleport"}, "unknown event type"),
])
def test_invalid_events(event: dict, words: str) -> None:
    with pytest.raises(EventFormatError, match=words):
        validate_event(event)


def test_reader_skips_a_torn_last_line_but_not_a_torn_middle(tmp_path: Path) -> None:
    good = json.dumps({"v": 1, "t": 1.0, "node": "a", "type": "node_stopped", "reason": "x"})
    path = tmp_path / "a.jsonl"
    path.write_text(good + "\n" + '{"v": 1, "t"')
    assert len(list(read_events(path))) == 1
    path.write_text('{"v": 1, "t"\n' + good + "\n")
    with pytest.raises(EventFormatError, match="a.jsonl:1"):
        list(read_events(path))
