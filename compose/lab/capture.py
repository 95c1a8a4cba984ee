"""Packet capture for ``--capture``: tcpdump on every interface of each host, into
pcap/HOST.pcap (for Wireshark), started as hosts come up and stopped at teardown."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from p2plab.compose.backends.base import Backend

from p2plab.processes import stop_children


class Captures:
    def __init__(self, backend: Backend, run_dir: Path, enabled: bool) -> None:
        self.backend = backend
        self.run_dir = run_dir
        self.enabled = enabled
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, hosts: list[str]) -> None:
        if not self.enabled:
            return
        out = self.run_dir / "pcap"
        out.mkdir(exist_ok=True)
        for host in hosts:
            if host in self.processes:
                continue
            # -Z root: Debian's tcpdump otherwise writes as user tcpdump, which may not
            # write into the run's folder (a volume, on swarm engines).
            argv = [*self.backend.netns_command(host), "tcpdump", "-i", "any", "-U", "-q",
                    "-Z", "root", "-w", self.backend.lab_path(out / f"{host}.pcap")]
            self.processes[host] = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                                    stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.DEVNULL,
                                                    start_new_session=True)
        time.sleep(0.5)  # tcpdump needs a moment before the first packet it should see

    def stop(self) -> None:
        stop_children(self.processes.values())
