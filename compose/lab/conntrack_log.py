"""Hole-punch forensics, the routers' side (``forensics: true``): each router's
connection tracking as it happens, ``conntrack -E`` with timestamps, into
routers/ROUTER.conntrack. Every mapping its NAT makes (a private socket, the public port
it got, the destination), every packet from outside that reached it (translated to a
host, or not), and when each expired. Off, it starts nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import IO

from p2plab.compose.backends.base import Backend

from p2plab.processes import stop_children

FOLDER = "routers"


class ConntrackLogs:
    def __init__(self, backend: Backend, run_dir: Path, enabled: bool) -> None:
        self.backend = backend
        self.run_dir = run_dir
        self.enabled = enabled
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._files: list[IO[bytes]] = []

    def start(self, routers: list[str]) -> None:
        if not self.enabled:
            return
        out = self.run_dir / FOLDER
        out.mkdir(exist_ok=True)
        for router in routers:
            if router in self.processes:
                continue
            # The output streams back to this process (also from a swarm engine's helper).
            log = open(out / f"{router}.conntrack", "wb")  # closed in stop()
            self._files.append(log)
            argv = [*self.backend.netns_command(router), "conntrack", "-E", "-o", "timestamp"]
            self.processes[router] = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                                      stdout=log, stderr=subprocess.DEVNULL,
                                                      start_new_session=True)

    def stop(self) -> None:
        stop_children(self.processes.values())
        for log in self._files:
            log.close()
        self._files.clear()
