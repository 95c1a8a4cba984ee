"""The one place an executor is chosen by its name: the command line's ``--backend``,
a kept lab's record and ``p2plab clean`` come here; everything else holds a backend
object (or class) and asks it. Backends are imported when chosen: Docker is optional."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Container
from pathlib import Path

from p2plab.compose.backends.base import Backend, BackendError

# Name -> "module:class" of each backend that builds a real lab.
EMULATORS = {
    "docker": "p2plab.compose.backends.docker:DockerBackend",
    "netns": "p2plab.compose.backends.netns:NetnsBackend",
    "swarm": "p2plab.compose.backends.swarm.backend:SwarmBackend",
}
# The simulator runs the same scenario as a model (compose/sim): no lab, no backend.
SIMULATOR = "sim"
DEFAULT = "docker"
EXECUTORS = (*EMULATORS, SIMULATOR)  # what --backend takes
ONE_MACHINE = ("docker", "netns")  # emulators whose whole lab is on this machine


def is_simulator(name: str) -> bool:
    return name == SIMULATOR


def backend_class(name: str) -> type[Backend]:
    """The class of the emulation backend called ``name``."""
    if name not in EMULATORS:
        hint = (" (the simulator builds no lab: run the scenario with p2plab run "
                "--backend sim)" if is_simulator(name) else "")
        raise BackendError(f"unknown emulation backend {name!r}{hint}; available: "
                           f"{', '.join(EMULATORS)}")
    module, cls = EMULATORS[name].split(":")
    found: type[Backend] = getattr(importlib.import_module(module), cls)
    return found


def make_backend(name: str, run_id: str,
                 log: Callable[[str], None] = lambda message: None) -> Backend:
    """The backend called ``name`` for one run."""
    return backend_class(name)(run_id, log=log)


def clean_all(spare: Container[str], logs_dirs: dict[str, Path]) -> list[str]:
    """What every backend made for runs not in ``spare`` (``p2plab clean``)."""
    removed: list[str] = []
    for name in EMULATORS:
        removed += backend_class(name).clean(spare, logs_dirs)
    return removed
