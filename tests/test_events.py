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
    with pytest.raises(EventFormatError, match=r"a\.jsonl:2"):
        list(read_events(path))


def test_live_tail_reads_past_a_torn_line_as_analysis_does(tmp_path: Path) -> None:
    """A node killed mid-line, then restarted: the runner's tail (polled in its wait
    loop) reads what analysis reads, and notes the torn line instead of raising."""
    from p2plab.compose.lab.events_tail import EventTail

    def line(t: int) -> str:
        return json.dumps({"v": SCHEMA_VERSION, "t": t, "node": "a", "type": "node_stopped",
                           "reason": "x"}, separators=(",", ":"))

    path = tmp_path / "a.jsonl"
    path.write_text(line(1) + "\n" + line(2)[:17])  # killed while writing event 2
    tail = EventTail(tmp_path)
    tail.poll()
    assert [e["t"] for e in tail.of("a")] == [1]
    with open(path, "a") as fh:  # restarted: its next event lands on the torn line
        fh.write(line(3) + "\n" + line(4) + "\n")
    tail.poll()
    assert [e["t"] for e in tail.of("a", "node_stopped")] == [1, 3, 4]
    assert tail.torn == ["a.jsonl:2"]
    assert [e["t"] for e in read_events(path)] == [1, 3, 4]


def test_a_torn_line_before_an_event_with_sorted_keys(tmp_path: Path) -> None:
    """A writer may order keys as it likes ("node" before "v"), nest objects too."""
    whole = json.dumps({"v": 1, "t": 3, "node": "a", "type": "topic_peers", "topic": "t",
                        "peers": ["x"], "extra": {"nested": {"deep": 1}}},
                       sort_keys=True, separators=(",", ":"))
    path = tmp_path / "a.jsonl"
    path.write_text('{"node":"a","peers":{"x' + whole + "\n")
    torn: list[str] = []
    assert [e["t"] for e in read_events(path, torn)] == [3]
    assert torn == ["a.jsonl:1"]
