"""A long step says it is alive: a line with the elapsed time every few seconds.

``Heartbeat`` wraps a slow call inside p2plab (cargo, mmdebstrap, docker build); the
command line wraps a slow Makefile step, and runs before any package is installed (the
standard library only)::

    python3 p2plab/progress.py "installing Python packages" LOG -- pip install ...

The command's output goes to LOG; its last lines are printed if it fails.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

EVERY_S = 5.0


def elapsed_text(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Heartbeat:
    """``with Heartbeat("building the Rust node", log):`` logs "... (still going, 15s)"
    every ``every`` seconds until the block ends, then "... done in 2m03s"."""

    def __init__(self, label: str, log: Callable[[str], None], every: float = EVERY_S) -> None:
        self.label = label
        self.log = log
        self.every = every
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self.started = 0.0

    def _beat(self) -> None:
        while not self._done.wait(self.every):
            self.log(f"{self.label} (still going, {elapsed_text(time.monotonic() - self.started)})")

    def __enter__(self) -> Heartbeat:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._done.set()
        self._thread.join()
        if kind is None:
            self.log(f"{self.label}: done in {elapsed_text(time.monotonic() - self.started)}")


def run_step(label: str, log_path: Path, argv: list[str]) -> int:
    """Run ``argv`` with its output in ``log_path``, a heartbeat line meanwhile."""
    log_path.parent.mkdir(parents=True, exist_ok=True)

    def say(message: str) -> None:
        print(f"== {message}", flush=True)

    say(f"{label} (output in {log_path})")
    with open(log_path, "wb") as out, Heartbeat(label, say):
        code = subprocess.call(argv, stdout=out, stderr=subprocess.STDOUT)
        if code != 0:
            tail = log_path.read_text(errors="replace").splitlines()[-30:]
            print("\n".join(tail), file=sys.stderr)
            say(f"{label}: failed (exit {code}; the whole output is in {log_path})")
            sys.exit(code)
    return 0


def main(args: list[str]) -> int:
    if len(args) < 4 or args[2] != "--":
        print("usage: progress.py LABEL LOG -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    return run_step(args[0], Path(args[1]), args[3:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
