"""A run's events, read once, held per event type in columns.

A big run is almost all message and connection events (gossip-10k: a million
``message_received`` lines); those are parsed by Arrow's JSON reader into typed
columns, in C++, without a Python dict per line. The few others (node_started,
topic_peers, faults, CPU samples, ...) carry lists and nested fields and go through the
validating Python reader (``p2plab.events.read_events``). A file Arrow cannot parse (a
line torn by a killed node) is read wholly by the Python reader, which reads past torn
lines and notes them.

Every frame keeps the original order of events with equal times (``_order``: file,
then line), so what analysis sees does not depend on how the events were read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from p2plab.events import SCHEMA_VERSION, EventFormatError, read_events, validate_event

ORDER = "_order"
_LINE_BITS = 32  # _order = file index << 32 | line index

# Event types read as columns, and their fields (beyond the envelope) analysis uses.
_MESSAGE = ("msg_id", "seq", "size", "topic", "flow", "via_mesh")
_CONNECTION = ("peer", "remote_addr", "kind", "transport", "direction")
BULK_FIELDS: dict[str, tuple[str, ...]] = {
    "message_published": _MESSAGE,
    "message_received": _MESSAGE,
    "connection_opened": _CONNECTION,
    "connection_closed": _CONNECTION,
    "ping": ("peer", "rtt_ms", "outcome", "reason"),
}
_TYPES: dict[str, pa.DataType] = {
    "v": pa.int64(), "t": pa.float64(), "node": pa.string(), "type": pa.string(),
    "msg_id": pa.string(), "seq": pa.int64(), "size": pa.int64(),
    "topic": pa.string(), "flow": pa.string(), "via_mesh": pa.bool_(),
    "peer": pa.string(), "remote_addr": pa.string(), "kind": pa.string(),
    "transport": pa.string(), "direction": pa.string(), "rtt_ms": pa.float64(),
    "outcome": pa.string(), "reason": pa.string(),
}
BULK_SCHEMA = pa.schema([(name, kind) for name, kind in _TYPES.items()])
# Strings that repeat (a node's name, a message id on every copy): kept as dictionaries
# (categoricals in pandas), four bytes a row instead of a string each.
_REPEATED = ("node", "type", "msg_id", "topic", "flow", "peer", "remote_addr", "kind",
             "transport", "direction", "outcome")
_PARSE = pa_json.ParseOptions(explicit_schema=BULK_SCHEMA, unexpected_field_behavior="ignore",
                              newlines_in_values=False)
_READ = pa_json.ReadOptions(block_size=16 << 20)
_BULK_TYPES = pa.array(list(BULK_FIELDS))


@dataclass
class EventLog:
    """The events of one run: one frame per event type, each sorted by time."""

    frames: dict[str, pd.DataFrame]
    torn: list[str] = field(default_factory=list)  # file:line of torn lines read past

    def of(self, *types: str) -> pd.DataFrame:
        """The events of these types, in time order (an empty frame if there are none)."""
        parts = [self.frames[t] for t in types if t in self.frames]
        if not parts:  # with the columns a bulk type always has, so selections work
            known = dict.fromkeys(f for t in types for f in BULK_FIELDS.get(t, ()))
            return pd.DataFrame(columns=["v", "t", "node", "type", *known, ORDER])
        if len(parts) == 1:
            return parts[0]
        return (pd.concat(parts, ignore_index=True)
                .sort_values(["t", ORDER], kind="stable").reset_index(drop=True))

    @property
    def empty(self) -> bool:
        return not any(len(f) for f in self.frames.values())

    def time_span(self) -> tuple[float, float] | None:
        """First and last event time, or None for no events."""
        spans = [(float(f["t"].min()), float(f["t"].max())) for f in self.frames.values()
                 if len(f)]
        if not spans:
            return None
        return min(a for a, _ in spans), max(b for _, b in spans)

    def __len__(self) -> int:
        return sum(len(f) for f in self.frames.values())


def read_event_log(events_dir: Path) -> EventLog:
    """Every ``*.jsonl`` under ``events_dir``, validated, as an ``EventLog``."""
    bulk: list[pa.Table] = []
    others: dict[str, list[dict[str, Any]]] = {}
    torn: list[str] = []
    for number, path in enumerate(sorted(events_dir.glob("*.jsonl"))):
        base = number << _LINE_BITS
        if not _read_columnar(path, base, bulk, others):
            for line, event in enumerate(read_events(path, torn)):
                event[ORDER] = base + line
                others.setdefault(event["type"], []).append(event)
    frames: dict[str, pd.DataFrame] = {}
    if bulk:
        table = pa.concat_tables(bulk)
        for kind, names in BULK_FIELDS.items():
            part = table.filter(pc.equal(table["type"], kind))
            rows = others.pop(kind, [])  # the same type from a file read in Python
            if part.num_rows == 0 and not rows:
                continue
            frame = part.select(["v", "t", "node", "type", *names, ORDER]).to_pandas()
            if rows:
                frame = pd.concat([frame, pd.DataFrame(rows)], ignore_index=True)
            frames[kind] = _sorted(frame)
    for kind, rows in others.items():
        frames[kind] = _sorted(pd.DataFrame(rows))
    return EventLog(frames, torn)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["t", ORDER], kind="stable").reset_index(drop=True)


def _read_columnar(path: Path, base: int, bulk: list[pa.Table],
                   others: dict[str, list[dict[str, Any]]]) -> bool:
    """Read one file through Arrow; False if it cannot (a torn line), leaving nothing
    added so the caller reads it in Python instead. Arrow streams the file in blocks,
    each encoded before the next is parsed; Python then streams it once more for the
    few lines of other types, so a big log is never held whole, nor as Python objects."""
    if path.stat().st_size == 0:
        return True
    batches: list[pa.Table] = []
    rare: set[int] = set()
    kinds: list[pa.Array] = []  # each block's event types, to check the rare lines against
    rows = 0
    try:
        reader = pa_json.open_json(path, read_options=_READ, parse_options=_PARSE)
        for batch in reader:
            table = pa.Table.from_batches([batch])
            if (table["v"].null_count or table["t"].null_count or table["node"].null_count
                    or table["type"].null_count
                    or not pc.all(pc.equal(table["v"], SCHEMA_VERSION)).as_py()):
                return False  # the Python reader names the line and the problem
            kinds.append(table["type"].combine_chunks())
            is_bulk = pc.is_in(table["type"], value_set=_BULK_TYPES)
            rare.update(rows + i for i in pc.indices_nonzero(pc.invert(is_bulk)).to_pylist())
            order = pa.array(np.arange(base + rows, base + rows + len(table), dtype=np.int64))
            table = table.append_column(ORDER, order).filter(is_bulk)
            for name in _REPEATED:
                table = table.set_column(table.schema.get_field_index(name), name,
                                         pc.dictionary_encode(table[name]))
            batches.append(table)
            rows += len(batch)
    except pa.ArrowInvalid:
        return False
    found: list[dict[str, Any]] = []
    types = {i: t for i, t in zip(sorted(rare), _take(kinds, sorted(rare)), strict=True)}
    last = max(rare, default=-1)
    lines = 0
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if lines > last:
                break  # every other line is Arrow's already
            if not line.strip():
                continue
            if lines in rare:
                event = json.loads(line)
                if not isinstance(event, dict) or event.get("type") != types[lines]:
                    return False  # not the line Arrow counted: read it all in Python
                try:
                    validate_event(event)
                except EventFormatError as exc:
                    raise EventFormatError(f"{path}:{number}: {exc}") from exc
                event[ORDER] = base + lines
                found.append(event)
            lines += 1
    for event in found:
        others.setdefault(event["type"], []).append(event)
    bulk.extend(batches)
    return True


def _take(blocks: list[pa.Array], indices: list[int]) -> list[str]:
    """The values at these row indices of blocks read one after another."""
    if not indices:
        return []
    return pa.chunked_array(blocks).take(pa.array(indices, pa.int64())).to_pylist()
