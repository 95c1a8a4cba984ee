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


def test_reader_reads_past_torn_lines_anywhere(tmp_path: Path) -> None:
    def event(t: float) -> str:
        return json.dumps({"v": 1, "t": t, "node": "a", "type": "node_stopped", "reason": "x"},
                          separators=(",", ":"))
    path = tmp_path / "a.jsonl"
    path.write_text(event(1) + "\n" + '{"v": 1, "t"')  # killed mid-line
    assert [e["t"] for e in read_events(path)] == [1]
    # Killed mid-line, restarted: the next event lands after the fragment, same line.
    path.write_text(event(1) + "\n" + '{"v":1,"t":2,"no' + event(3) + "\n" + event(4) + "\n"
                    + "garbage\n" + event(5) + "\n")
    torn: list[str] = []
    assert [e["t"] for e in read_events(path, torn)] == [1, 3, 4, 5]
    assert torn == ["a.jsonl:2", "a.jsonl:4"]
    # Valid JSON that breaks the schema is a producer's bug: it still raises.
    path.write_text(event(1) + "\n" + json.dumps({"v": 1, "t": 2, "node": "a"}) + "\n")
    with pytest.raises(EventFormatError, match="a.jsonl:2"):
        list(read_events(path))
