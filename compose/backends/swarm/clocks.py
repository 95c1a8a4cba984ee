"""One time base for a lab spread over engines.

Each engine's clock offset against the runner's is measured through its agent, as NTP
does: the runner's time before and after asking, the engine's time in between; of
several samples the one with the shortest round trip counts, and half that round trip
bounds the error. The mirror moves every event's time onto the runner's clock as it
copies the engines' event logs into the results folder, so analysis reads one time base
and never needs to know where a node ran.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAMPLES = 15
MIRROR_DRAIN_S = 0.5  # the agent sends every 0.1 s: a last read before closing


@dataclass(frozen=True)
class ClockOffset:
    offset_s: float  # engine clock minus runner clock
    uncertainty_s: float  # half the best round trip
    samples: int
    measured_at: float

    def as_dict(self) -> dict[str, Any]:
        return {"offset_ms": round(self.offset_s * 1000, 3),
                "uncertainty_ms": round(self.uncertainty_s * 1000, 3),
                "samples": self.samples, "measured_at": round(self.measured_at, 3)}


def measure(sample: Callable[[], tuple[float, float, float]], n: int = SAMPLES) -> ClockOffset:
    best: tuple[float, float] | None = None  # (round trip, offset)
    for _ in range(n):
        sent, engine, received = sample()
        rtt = received - sent
        if best is None or rtt < best[0]:
            best = (rtt, engine - (sent + received) / 2)
    assert best is not None
    return ClockOffset(best[1], best[0] / 2, n, time.time())


def corrected(lines: str, offset_s: float) -> str:
    """Event lines with ``t`` moved onto the runner's clock (same compact encoding as
    the writers'); a line that is not an event (a torn fragment) is copied unchanged."""
    out = []
    for line in lines.splitlines(keepends=True):
        try:
            event = json.loads(line)
            event["t"] = round(event["t"] - offset_s, 6)
            out.append(json.dumps(event, separators=(",", ":")) + "\n")
        except (ValueError, KeyError, TypeError):
            out.append(line)
    return "".join(out)


@dataclass(frozen=True)
class MirroredChunk:
    """One message of an agent's mirror stream: a piece of a file under the run's folder."""

    relative: str  # events/NAME.jsonl, pcap/HOST.pcap, ...
    data: bytes
    reset: bool  # the file was rewritten: this chunk starts it again

    @classmethod
    def parse(cls, raw: bytes, offset_s: float) -> MirroredChunk:
        """From the agent's JSON line; event lines moved onto the runner's clock."""
        item = json.loads(raw)
        relative = str(item["path"])
        if item.get("base64"):
            return cls(relative, base64.b64decode(item["data"]), bool(item.get("reset")))
        text = str(item["data"])
        if relative.startswith("events/") and relative.endswith(".jsonl"):
            text = corrected(text, offset_s)
        return cls(relative, text.encode(), bool(item.get("reset")))

    def write(self, run_dir: Path, fresh: bool = False) -> None:
        """Appended to its file in ``run_dir`` (started again if ``fresh`` or reset);
        nothing outside the mirrored folders is written."""
        path = run_dir / self.relative
        if path.parent.resolve() == run_dir.resolve() or ".." in Path(self.relative).parts:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb" if fresh or self.reset else "ab") as fh:
            fh.write(self.data)


class EventMirror:
    """Copies what an engine's hosts write under /lab (events, link-stage files, packet
    captures) into the results folder while the run goes; one thread per engine."""

    def __init__(self, connect: Callable[[], Any], run_dir: Path, offset: ClockOffset,
                 log: Callable[[str], None]) -> None:
        self.connect = connect
        self.run_dir = run_dir
        self.offset = offset
        self.log = log
        self.stopping = threading.Event()
        self.conn: Any = None
        self.thread = threading.Thread(target=self._follow, daemon=True)

    def start(self) -> None:
        self.conn = self.connect()
        self.conn.settimeout(None)  # quiet stretches are normal
        self.conn.sendall(b"mirror\n")
        self.thread.start()

    def _follow(self) -> None:
        reader = self.conn.makefile("rb")
        try:
            for raw in reader:
                MirroredChunk.parse(raw, self.offset.offset_s).write(self.run_dir)
        except (OSError, ValueError) as exc:
            if not self.stopping.is_set():
                self.log(f"event mirror stopped: {exc}")

    def stop(self) -> None:
        time.sleep(MIRROR_DRAIN_S)
        self.stopping.set()
        try:
            self.conn.close()
        except OSError:
            pass
        self.thread.join(timeout=5)
