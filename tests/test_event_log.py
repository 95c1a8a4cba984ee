"""The columnar event reader gives what the validating line reader gives, type by type,
and falls back to it for torn files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from p2plab.analysis.event_log import BULK_FIELDS, ORDER, read_event_log

from p2plab.events import EventFormatError, read_events

pytestmark = pytest.mark.quick


def _events(node: str, start: float) -> list[dict]:
    out = [{"v": 1, "t": start, "node": node, "type": "node_started", "peer_id": f"id-{node}",
            "listen_addrs": [], "announced_addrs": [], "role": "peer", "topic": "chat",
            "topics": ["chat"]}]
    for i in range(5):
        t = start + 1 + i * 0.1
        out.append({"v": 1, "t": t, "node": node, "type": "message_received",
                    "msg_id": f"m{i}", "origin": "x", "seq": i, "size": 100, "topic": "chat",
                    "via_mesh": i % 2 == 0, "via_peer": "p"})
        out.append({"v": 1, "t": t, "node": node, "type": "connection_opened", "peer": f"p{i}",
                    "remote_addr": "/ip4/10.0.0.1/tcp/1", "kind": "direct",
                    "transport": "tcp", "direction": "inbound"})
        out.append({"v": 1, "t": t, "node": node, "type": "topic_peers", "topic": "chat",
                    "peers": [f"p{i}"], "mesh": [f"p{i}"]})
    out.append({"v": 1, "t": start + 2, "node": node, "type": "ping", "peer": "p1",
                "rtt_ms": 3, "outcome": "ok", "reason": None})
    return out


def _write(path: Path, events: list[dict], tail: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + tail)


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b or (a is None and isinstance(b, float) and math.isnan(b))


@pytest.mark.parametrize("torn", [False, True], ids=["clean", "torn"])
def test_columns_match_the_line_reader(tmp_path: Path, torn: bool) -> None:
    events = tmp_path / "events"
    _write(events / "a.jsonl", _events("a", 10.0))
    # A killed writer leaves half a line; the restarted node appends to it.
    _write(events / "b.jsonl", _events("b", 10.05),
           tail='{"v":1,"t":20.0,"node":"b","type":"message_rec' if torn else "")
    log = read_event_log(events)
    expected: dict[str, list[dict]] = {}
    torn_lines: list[str] = []
    for path in sorted(events.glob("*.jsonl")):
        for e in read_events(path, torn_lines):
            expected.setdefault(e["type"], []).append(e)
    assert log.torn == torn_lines and bool(torn_lines) == torn
    assert sorted(log.frames) == sorted(expected)
    for kind, rows in expected.items():
        frame = log.of(kind)
        assert len(frame) == len(rows), kind
        rows = sorted(rows, key=lambda e: e["t"])  # stable: file order for equal times
        fields = ["t", "node", *BULK_FIELDS.get(kind, ())] if kind in BULK_FIELDS else list(rows[0])
        for got, want in zip(frame.to_dict("records"), rows, strict=True):
            for f in fields:
                if f in want:
                    assert _same(want[f], got[f]), (kind, f, want[f], got[f])
    # Mixed types come back in time order, equal times in file order.
    both = log.of("message_received", "connection_opened")
    assert list(both["t"]) == sorted(both["t"])
    assert both[ORDER].is_unique


def test_a_line_of_another_schema_version_is_named(tmp_path: Path) -> None:
    events = _events("a", 1.0)
    events[3] = {**events[3], "v": 2}
    _write(tmp_path / "events" / "a.jsonl", events)
    with pytest.raises(EventFormatError, match=r"a.jsonl:4: .*version 2"):
        read_event_log(tmp_path / "events")


def test_an_unknown_event_type_is_refused(tmp_path: Path) -> None:
    events = [*_events("a", 1.0), {"v": 1, "t": 9.0, "node": "a", "type": "mystery"}]
    _write(tmp_path / "events" / "a.jsonl", events)
    with pytest.raises(EventFormatError, match="unknown event type 'mystery'"):
        read_event_log(tmp_path / "events")


def test_no_events_is_an_empty_log(tmp_path: Path) -> None:
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "a.jsonl").write_text("")
    log = read_event_log(tmp_path / "events")
    assert log.empty and log.time_span() is None
    assert list(log.of("message_received").columns)[:4] == ["v", "t", "node", "type"]
