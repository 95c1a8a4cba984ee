"""Signals that stop a run: Ctrl-C (SIGINT), a polite kill (SIGTERM) and a closed
terminal or lost SSH session (SIGHUP) all stop it the same way, as ``Interrupted``
(a KeyboardInterrupt that names the signal), and teardown is not to be cut short."""

from __future__ import annotations

import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """Stopped by a signal; whatever the run made is still torn down."""

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame


def raise_interrupted(signum: int, frame: Any) -> None:
    """A signal handler: stop whatever runs now with ``Interrupted``."""
    raise Interrupted(signal.Signals(signum).name)


def stop_on_signals() -> Mapping[int, Any]:
    """Every stop signal raises ``Interrupted`` from now on; returns the handlers it
    replaced, for ``restore``."""
    return {sig: signal.signal(sig, raise_interrupted) for sig in STOP_SIGNALS}


def restore(previous: Mapping[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def signal_name(exc: KeyboardInterrupt) -> str:
    """Which signal stopped the run (a plain KeyboardInterrupt is Ctrl-C's SIGINT)."""
    return exc.signame if isinstance(exc, Interrupted) else "SIGINT"


@contextmanager
def signals_ignored() -> Iterator[None]:
    """Teardown that no further stop signal may cut short."""
    previous: dict[int, Any] = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        restore(previous)
