"""Event logs as tidy tables: one row per message, delivery, connection event, hole punch,
ping and timeline step. Saved as CSV next to the report, so anyone can reload them:

    pandas.read_csv("results/RUN/tables/deliveries.csv")
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from p2plab.analysis.event_log import EventLog, read_event_log
from p2plab.analysis.metrics import node_table
from p2plab.topology.schema import _step_kind as step_kind_of

TABLES = ("messages", "deliveries", "connections", "hole_punches", "pings", "steps")


def _cols(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    for column in columns:
        if column not in frame:
            frame[column] = pd.Series(dtype=object)
    return frame[columns].reset_index(drop=True)


def build_tables(events: EventLog, steps: list[dict] | None = None) -> dict[str, pd.DataFrame]:
    nodes = node_table(events)
    by_peer = {info["peer_id"]: name for name, info in nodes.items()}
    pub = events.of("message_published").copy()
    messages = _cols(pub.rename(columns={"node": "origin_node", "t": "t_published"}),
                     ["msg_id", "origin_node", "seq", "size", "topic", "flow", "t_published"])
    rec = events.of("message_received").copy()
    rec = _cols(rec.rename(columns={"node": "receiver", "t": "t_received"}),
                ["msg_id", "receiver", "t_received", "size"])
    deliveries = rec.merge(messages[["msg_id", "origin_node", "t_published"]], on="msg_id",
                           how="left")
    deliveries["latency_ms"] = (deliveries["t_received"] - deliveries["t_published"]) * 1000
    deliveries["duplicate"] = deliveries.duplicated(["msg_id", "receiver"])
    deliveries = _cols(deliveries, ["msg_id", "origin_node", "receiver", "t_published",
                                    "t_received", "latency_ms", "size", "duplicate"])
    conn = events.of("connection_opened", "connection_closed").copy()
    if not conn.empty:
        conn["peer_node"] = conn["peer"].map(by_peer)
    connections = _cols(conn, ["t", "node", "peer_node", "type", "kind", "transport",
                               "direction", "remote_addr"])
    hp = events.of("hole_punch").copy()
    if not hp.empty:
        hp["peer_node"] = hp["peer"].map(by_peer)
    hole_punches = _cols(hp, ["t", "node", "peer_node", "attempt", "outcome", "elapsed_ms",
                              "transport", "role", "reason"])
    pg = events.of("ping").copy()
    if not pg.empty:
        pg["peer_node"] = pg["peer"].map(by_peer)
    pings = _cols(pg, ["t", "node", "peer_node", "rtt_ms", "outcome", "reason"])
    step_rows = [{"t": s["t"], "step": json.dumps(s["step"], sort_keys=True),
                  "kind": _step_kind(s["step"])} for s in (steps or [])]
    steps_frame = _cols(pd.DataFrame(step_rows), ["t", "kind", "step"])
    return {"messages": messages, "deliveries": deliveries, "connections": connections,
            "hole_punches": hole_punches, "pings": pings, "steps": steps_frame}


def _step_kind(step: dict) -> str:
    return step_kind_of(step) or "?"


def save_tables(run_dir: Path, events: EventLog | None = None) -> dict[str, pd.DataFrame]:
    """Build the tables (from ``events``, or the folder's logs) and write them as CSV;
    Arrow's CSV writer, since a big run's deliveries table has a million rows."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    if events is None:
        events = read_event_log(run_dir / "events")
    tables = build_tables(events, manifest.get("steps"))
    out = run_dir / "tables"
    out.mkdir(exist_ok=True)
    for name, frame in tables.items():
        pa_csv.write_csv(_as_csv_table(frame), out / f"{name}.csv")
    return tables


def _as_csv_table(frame: pd.DataFrame) -> pa.Table:
    """The frame as Arrow columns CSV can hold: categoricals as plain strings, mixed
    object columns as text."""
    text = {c: "string" for c in frame.columns if frame[c].dtype == object}
    table = pa.Table.from_pandas(frame.astype(text), preserve_index=False)
    for i, column in enumerate(table.columns):
        if pa.types.is_dictionary(column.type):
            table = table.set_column(i, table.field(i).name, column.cast(pa.string()))
    return table
