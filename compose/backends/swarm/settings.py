"""Which cluster a swarm run uses: the manager, the registry, the engines' socket.

Read from the environment (and ``--registry``), or from the local cluster that
``make cluster`` made when DOCKER_HOST names no other engine.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from p2plab.compose.backends.base import BackendError
from p2plab.compose.backends.swarm import cluster

DEFAULT_ENGINE_SOCKET = "/var/run/docker.sock"
AGENT_PORTS = (20000, 40000)  # two per run: the engine relay and the line protocol


@dataclass(frozen=True)
class SwarmSettings:
    manager: str  # a Docker host URL: unix://, tcp://, ssh://
    registry: str  # host:port every engine pulls from
    engine_socket: str  # on each engine's machine, mounted into the agent


def resolve(log: Callable[[str], None] = lambda m: None) -> SwarmSettings:
    local = cluster.load()
    manager = os.environ.get("DOCKER_HOST")
    use_local = local is not None and (manager is None or manager == local.manager.docker_host)
    if manager is None and not use_local:
        raise BackendError("--backend swarm needs a swarm: set DOCKER_HOST to a manager "
                           "(and --registry), or run make cluster for a local one")
    if use_local:
        assert local is not None
        log(f"using the local cluster ({len(local.engines)} engines, make cluster)")
        manager = local.manager.docker_host
    registry = os.environ.get("P2PLAB_REGISTRY") or (
        local.registry if use_local and local is not None else "")
    if not registry:
        raise BackendError("--backend swarm needs --registry HOST:PORT (or P2PLAB_REGISTRY): "
                           "engines cannot share a local image; every engine must be able "
                           "to pull from it")
    socket = os.environ.get("P2PLAB_ENGINE_SOCKET") or (
        local.engine_socket if use_local and local is not None else DEFAULT_ENGINE_SOCKET)
    assert manager is not None
    return SwarmSettings(manager, registry, socket)


def agent_port(run_id: str) -> int:
    """The run's agent ports (this and the next): from the run id, so two runs on one
    cluster do not collide (the agents listen on the engines' host networks)."""
    low, high = AGENT_PORTS
    digest = int(hashlib.sha256(run_id.encode()).hexdigest(), 16)
    return low + 2 * (digest % ((high - low) // 2))
