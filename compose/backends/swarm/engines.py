"""The runner's end of each engine's agent: the engine's Docker API and the agent's
line protocol (clock samples, node commands, the event mirror), both over the run's TLS.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from p2plab.compose.backends.swarm.tls import RunCertificates

ENGINE_API = "1.41"  # Docker Engine 20.10 and every later engine speak it


@dataclass
class EngineHandle:
    """One engine of the cluster, as the runner reaches it through its agent."""

    node_id: str
    hostname: str
    address: str
    client: Any = None
    agent_container: Any = None
    lines: AgentLines | None = None
    docker_engine: str = "?"
    # What placement constraints can name (topology.placement.engine_attributes).
    attributes: dict[str, str] = field(default_factory=dict)


class AgentLines:
    """The agent's line protocol over TLS (time, send, mirror)."""

    def __init__(self, address: str, port: int, certs: RunCertificates) -> None:
        self.address, self.port = address, port
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certs.ca))
        context.load_cert_chain(certs.client_cert, certs.client_key)
        context.check_hostname = False  # the server's name is its IP, checked by the CA
        self.context = context
        self.lock = threading.Lock()
        self.conn: ssl.SSLSocket | None = None
        self.reader: Any = None

    def connect(self, timeout: float = 5.0) -> ssl.SSLSocket:
        raw = socket.create_connection((self.address, self.port), timeout=timeout)
        return self.context.wrap_socket(raw)

    def _ensure(self) -> None:
        if self.conn is None:
            self.conn = self.connect()
            self.conn.settimeout(30)
            self.reader = self.conn.makefile("rb")

    def request(self, *lines: str) -> str:
        with self.lock:
            self._ensure()
            assert self.conn is not None
            self.conn.sendall("".join(f"{line}\n" for line in lines).encode())
            return self.reader.readline().decode().strip()

    def clock_sample(self) -> tuple[float, float, float]:
        """(runner time sent, engine time, runner time received)."""
        with self.lock:
            self._ensure()
            assert self.conn is not None
            sent = time.time()
            self.conn.sendall(b"time\n")
            engine = int(self.reader.readline()) / 1e9
            return sent, engine, time.time()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def engine_client(address: str, port: int, certs: RunCertificates) -> Any:
    """A Docker client for one engine, through its agent."""
    import docker

    client = docker.DockerClient(
        base_url=f"https://{address}:{port}", timeout=120, version=ENGINE_API,
        tls=docker.tls.TLSConfig(client_cert=(str(certs.client_cert), str(certs.client_key)),
                                 ca_cert=str(certs.ca), verify=True))
    client.api.trust_env = False  # requests would let REQUESTS_CA_BUNDLE override the CA
    return client
