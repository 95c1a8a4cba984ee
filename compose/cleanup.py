"""Find and remove whatever a lab left behind, by name prefix.

Everything the netns backend makes lives inside namespaces named ``p2pl-<run>-...``
(bridges and veths included, nothing is created in the host's own namespace), so
killing their processes and deleting the namespaces removes it all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from compose.backend import PREFIX


def lab_namespaces(prefix: str = PREFIX) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    names = [line.split()[0] for line in out.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix)]


def namespace_pids(namespace: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True,
                         text=True, check=False)
    return [int(p) for p in out.stdout.split() if p.isdigit()]


def kill_namespace_processes(namespace: str, grace: float = 0.0) -> None:
    """SIGTERM (after ``grace``) then SIGKILL every process in the namespace."""
    pids = namespace_pids(namespace)
    if grace > 0:
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = namespace_pids(namespace)
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while namespace_pids(namespace) and time.monotonic() < deadline:
        time.sleep(0.05)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def remove_namespaces(prefix: str = PREFIX) -> list[str]:
    """Kill processes in, then delete, every namespace whose name starts with ``prefix``."""
    removed = []
    namespaces = lab_namespaces(prefix)
    for ns in namespaces:
        kill_namespace_processes(ns)
    # Node and router namespaces first, the fabric (bridges) last.
    for ns in sorted(namespaces, key=lambda n: n.endswith("-fabric")):
        result = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
        if result.returncode == 0:
            removed.append(ns)
    return removed


# Helpers the runner starts from the host inside lab namespaces (link stages, UDP
# echoes): a Docker container's namespace dies with it, so find them by command line.
HELPER_MODULES = ("compose.linkstage", "p2plab.linkcheck")


def helper_processes() -> list[tuple[int, str]]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(f"-m {module} " in cmd for module in HELPER_MODULES):
            out.append((int(pid), cmd.strip()))
    return out


def kill_helpers() -> list[str]:
    killed = []
    for pid, cmd in helper_processes():
        _signal(pid, signal.SIGKILL)
        killed.append(f"process {pid} ({cmd[:60]})")
    return killed
