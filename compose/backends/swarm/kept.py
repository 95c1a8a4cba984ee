"""A swarm lab kept up after its timeline (``p2plab run --keep --backend swarm``).

Once the runner has gone, ``p2plab exec``, commands and ``p2plab down`` still reach the
lab through the run's agents, which stay: the kept record holds each host's engine
address, the agents' port, the run's TLS folder and the manager. ``down`` first brings
the results folder up to date from every engine (events moved onto the runner's clock,
link-stage files, probe files, packet captures; node logs), then removes the stack as a
run's end does.
"""

from __future__ import annotations

import json
import shutil
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from p2plab.compose.backends.base import PREFIX, BackendError
from p2plab.compose.backends.swarm import clocks, settings
from p2plab.compose.backends.swarm.engines import AgentLines, engine_client
from p2plab.compose.backends.swarm.stack import remove_stack
from p2plab.compose.backends.swarm.tls import RunCertificates

QUIET_S = 1.0  # a mirror stream this long without news has sent everything


@dataclass
class SwarmKeep:
    """What a kept swarm lab's record holds beyond the common fields."""

    manager: str
    engine_socket: str
    image: str
    port: int  # the agents' engine port; the line protocol is on port + 1
    certs: str  # the run's TLS folder
    hosts: dict[str, str]  # host -> its engine's address
    offsets: dict[str, float]  # engine address -> clock offset (s) measured at start

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, details: dict[str, Any]) -> SwarmKeep:
        try:
            return cls(**details)
        except TypeError:
            raise BackendError("this kept swarm lab's record is incomplete (made by another "
                               "p2plab version?): remove it with p2plab clean --kept") from None

    def address(self, host: str) -> str:
        try:
            return self.hosts[host]
        except KeyError:
            raise BackendError(f"no host {host!r} in this kept lab; hosts: "
                               f"{', '.join(sorted(self.hosts))}") from None

    @property
    def tls(self) -> RunCertificates:
        return RunCertificates(Path(self.certs))


def docker_cli(keep: SwarmKeep, host: str) -> list[str]:
    """``docker`` at the host's engine, through its agent (the run's TLS)."""
    tls = keep.tls
    return ["docker", "--host", f"tcp://{keep.address(host)}:{keep.port}", "--tlsverify",
            "--tlscacert", str(tls.ca), "--tlscert", str(tls.client_cert),
            "--tlskey", str(tls.client_key)]


def exec_argv(keep: SwarmKeep, run_id: str, host: str, argv: list[str],
              interactive: bool = False) -> list[str]:
    """``docker exec`` in the host's container, through its engine's agent."""
    tty = ["-it"] if interactive and sys.stdin.isatty() else ["-i"]
    return [*docker_cli(keep, host), "exec", *tty, f"{PREFIX}{run_id}-{host}", *argv]


def send(keep: SwarmKeep, host: str, command: dict[str, Any]) -> None:
    """A node-contract command into a node's control FIFO, through its agent."""
    from p2plab.control import ControlError

    lines = AgentLines(keep.address(host), keep.port + 1, keep.tls)
    try:
        answer = lines.request(f"send {host}", json.dumps(command))
    except (OSError, ssl.SSLError) as exc:
        raise ControlError(f"the agent at {keep.address(host)} is unreachable: {exc}") from None
    finally:
        lines.close()
    if answer != "ok":
        raise ControlError(answer.removeprefix("error: "))


def sync(keep: SwarmKeep, run_dir: Path) -> list[str]:
    """Copy every engine's part of the run's folder into the results folder again, whole
    (what the runner mirrored before it left is replaced, not appended to)."""
    synced = []
    for address in sorted(set(keep.hosts.values())):
        written: set[str] = set()
        try:
            conn = AgentLines(address, keep.port + 1, keep.tls).connect()
        except (OSError, ssl.SSLError):
            continue  # its engine is gone: what the runner mirrored stays
        conn.settimeout(QUIET_S)
        conn.sendall(b"mirror\n")
        reader = conn.makefile("rb")
        try:
            for raw in reader:
                chunk = clocks.MirroredChunk.parse(raw, keep.offsets.get(address, 0.0))
                chunk.write(run_dir, fresh=chunk.relative not in written)
                written.add(chunk.relative)
        except (TimeoutError, OSError, ValueError):
            pass  # quiet: everything sent
        finally:
            conn.close()
        synced += sorted(written)
    return synced


def save_node_logs(keep: SwarmKeep, run_id: str, run_dir: Path) -> None:
    clients: dict[str, Any] = {}
    for host, address in keep.hosts.items():
        path = run_dir / "logs" / f"{host}.log"
        if path.exists() or (run_dir / "routers" / f"{host}.nft").exists():
            continue
        try:
            if address not in clients:
                clients[address] = engine_client(address, keep.port, keep.tls)
            path.write_bytes(clients[address].containers.get(f"{PREFIX}{run_id}-{host}").logs())
        except Exception:  # a courtesy: removal goes on
            pass


def bring_down(keep: SwarmKeep, run_id: str, run_dir: Path,
               log: Callable[[str], None] = lambda m: None) -> list[str]:
    """Results folder brought up to date, then the stack removed from every engine and
    the run's TLS material deleted."""
    import docker

    started = time.monotonic()
    synced = sync(keep, run_dir)
    log(f"results folder brought up to date: {len(synced)} files "
        f"({time.monotonic() - started:.1f} s)")
    save_node_logs(keep, run_id, run_dir)
    manager = docker.DockerClient(base_url=keep.manager, timeout=120)
    config = settings.SwarmSettings(keep.manager, "", keep.engine_socket)
    removed = remove_stack(manager, run_id, keep.image, config, log)
    shutil.rmtree(keep.certs, ignore_errors=True)
    return removed
