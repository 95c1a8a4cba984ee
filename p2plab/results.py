"""Results in a notebook: a run's summary and its events as typed pandas frames, read
the way the report reads them (columnar, ``analysis/event_log.py``), and a sweep's table.

    import p2plab.results as results
    run = results.open("results/gossip-50-...")
    run.summary["delivery"]["delivery_ratio"], run.deliveries.latency_ms.describe()
    sweep = results.open_sweep("results/sweep-gossip-10k-...")
    sweep.table.groupby("connect.degree").t90_ms.mean()
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from p2plab.analysis.event_log import EventLog, read_event_log
from p2plab.analysis.headline import headline
from p2plab.analysis.tables import build_tables


class ResultsError(ValueError):
    """A folder that is not what was asked for; the message says what it lacks."""


@dataclass
class Run:
    """One results folder. Frames are built on first use and kept."""

    path: Path
    summary: dict[str, Any]
    manifest: dict[str, Any]
    _tables: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def scenario(self) -> str:
        """The scenario as it ran (with its overrides), as YAML text."""
        return (self.path / "scenario.yaml").read_text()

    @property
    def status(self) -> str:
        return str(self.summary["status"])

    @property
    def figures(self) -> dict[str, Any]:
        """The headline figures (what ``compare`` and a sweep's table show)."""
        return headline(self.summary)

    @cached_property
    def events(self) -> EventLog:
        """Every event, held per type in columns: ``run.events.of("dial")``."""
        return read_event_log(self.path / "events")

    def _table(self, name: str) -> pd.DataFrame:
        if not self._tables:
            self._tables.update(build_tables(self.events, self.manifest.get("steps")))
        return self._tables[name]

    @property
    def messages(self) -> pd.DataFrame:
        """A row per published message: msg_id, origin_node, seq, size, topic, flow,
        t_published."""
        return self._table("messages")

    @property
    def deliveries(self) -> pd.DataFrame:
        """A row per copy received: msg_id, receiver, t_received, origin_node,
        t_published, latency_ms, ..."""
        return self._table("deliveries")

    @property
    def connections(self) -> pd.DataFrame:
        return self._table("connections")

    @property
    def hole_punches(self) -> pd.DataFrame:
        return self._table("hole_punches")

    @property
    def pings(self) -> pd.DataFrame:
        return self._table("pings")

    @property
    def steps(self) -> pd.DataFrame:
        return self._table("steps")

    @property
    def cpu(self) -> pd.DataFrame:
        """The host's CPU, a row per sample: t, busy_pct, user_pct, system_pct, ..."""
        samples = self.events.of("cpu")
        if samples.empty or "host" not in samples:
            return pd.DataFrame(columns=["t", "busy_pct"])
        host = pd.json_normalize(samples["host"].tolist())
        host.insert(0, "t", samples["t"].to_numpy())
        return host

    @property
    def propagation(self) -> pd.DataFrame:
        """The mean share of subscribers reached against time since publishing."""
        curve = self.summary.get("propagation", {}).get("curve") or {"t_ms": [], "share": []}
        return pd.DataFrame({"t_ms": curve["t_ms"], "share": curve["share"]})


def open(path: str | Path) -> Run:  # results.open, as the brief asks
    """A results folder (``p2plab run``'s, a suite's or a sweep's run)."""
    folder = Path(path)
    for name in ("manifest.json", "summary.json"):
        if not (folder / name).is_file():
            raise ResultsError(f"{folder} has no {name}: give a results folder (p2plab "
                               "report RUN rebuilds summary.json from its events)")
    return Run(folder, json.loads((folder / "summary.json").read_text()),
               json.loads((folder / "manifest.json").read_text()))


@dataclass
class Sweep:
    path: Path
    spec: dict[str, Any]
    table: pd.DataFrame  # sweep.csv: a row per run

    @property
    def parameters(self) -> list[str]:
        return [axis["path"] for axis in self.spec["axes"]]

    def run(self, index: int) -> Run:
        """The results folder of the table's row ``index``."""
        return open(self.path / str(self.table.loc[index, "run_dir"]))

    def mean(self, figure: str) -> pd.DataFrame:
        """``figure``'s mean, minimum and maximum over the repeats of each point."""
        return (self.table.groupby(self.parameters, sort=False)[figure]
                .agg(["mean", "min", "max", "count"]).reset_index())


def open_sweep(path: str | Path) -> Sweep:
    folder = Path(path)
    if not (folder / "sweep.json").is_file():
        raise ResultsError(f"{folder} has no sweep.json: give the folder p2plab sweep made")
    spec = json.loads((folder / "sweep.json").read_text())["spec"]
    table = pd.read_csv(folder / "sweep.csv")
    return Sweep(folder, spec, table)
