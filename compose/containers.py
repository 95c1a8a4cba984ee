"""Lab hosts as Docker containers: what the Docker and swarm backends do alike.

Both make a router or node the same way (the plan's address on its segment's network,
the run's folder at /lab, IPv6 off, SIGTERM to stop), wait for a router's start-up line,
kill, stop and exec the same way; they differ in which engine (a client) and which
/lab (a host folder, or a volume on each engine).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from p2plab.compose.backend import BackendError

LAB_MOUNT = PurePosixPath("/lab")
ROUTER_READY = "p2plab-router: ready"


def create_host(client: Any, image: str, name: str, hostname: str, labels: dict[str, str],
                network: str, ip: str, lab_source: str, command: list[str],
                **kwargs: Any) -> Any:
    """A created (not started) container for one lab host; ``lab_source`` is mounted at
    /lab (a host folder or a volume name)."""
    return client.containers.create(
        image, command=command, name=name, hostname=hostname, labels=labels,
        network=network,
        networking_config={network: client.api.create_endpoint_config(ipv4_address=ip)},
        volumes={lab_source: {"bind": str(LAB_MOUNT), "mode": "rw"}},
        sysctls={"net.ipv6.conf.all.disable_ipv6": "1", **kwargs.pop("sysctls", {})},
        stop_signal="SIGTERM", **kwargs,
    )


def wait_router_ready(container: Any, name: str, timeout: float, where: str = "") -> None:
    """Until the router's start-up script says it is ready (interfaces named, rules in)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if ROUTER_READY in container.logs().decode(errors="replace"):
            return
        if container.status == "exited":
            break
        time.sleep(0.1)
    raise BackendError(f"router {name} did not come up{where}:\n"
                       f"{container.logs().decode(errors='replace')[-800:]}")


def kill(container: Any) -> None:
    """SIGKILL a running host and wait until it is down (a crash)."""
    container.reload()
    if container.status == "running":
        container.kill()
        container.wait(timeout=30)


def stop_saving_log(container: Any, timeout: float, log: Path) -> int:
    """SIGTERM, wait, and keep the container's output as the node's log."""
    container.stop(timeout=max(1, int(timeout)))
    code = container.wait(timeout=30)["StatusCode"]
    log.write_bytes(container.logs())
    return int(code)


def exec_in(container: Any, argv: list[str]) -> subprocess.CompletedProcess[str]:
    result = container.exec_run(argv, demux=True)
    out, err = result.output
    return subprocess.CompletedProcess(argv, result.exit_code,
                                       (out or b"").decode(), (err or b"").decode())


def states(clients: Iterable[Any], label: str, prefix: str) -> dict[str, str]:
    """Host name -> container state, from one sparse listing per engine (the SDK would
    otherwise inspect every container: 50 inspections a poll load an engine more than
    the lab does)."""
    found: dict[str, str] = {}
    for client in clients:
        for c in client.containers.list(all=True, sparse=True, filters={"label": label}):
            found[c.attrs["Names"][0].lstrip("/").removeprefix(prefix)] = c.attrs["State"]
    return found
