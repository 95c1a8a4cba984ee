"""The per-engine agent of a swarm run: a global service, one task on every engine.

Runs inside the node image on the engine's host network, never on a lab network (no
side channel libp2p could see). Both ports speak TLS and accept only clients holding a
certificate signed by the run's own CA (swarm secrets), so the engine's API is open to
the run's runner and nobody else:

- ``PORT``: the engine's Docker API (its socket, mounted at /var/run/docker.sock):
  the runner creates, starts, kills and execs the lab's containers on this engine with
  it, exactly as the Docker backend does on one machine.
- ``PORT + 1``: lines of p2plab's own: ``time`` (the engine's clock, for offsets),
  ``mirror`` (a stream of what nodes write under /lab: event logs, link-stage files),
  ``send NODE`` + a command line (a node-contract command into the node's FIFO).

``--sweep RUN`` removes the run's containers and volumes on this engine and exits: the
last step of tearing a run down, and of ``p2plab clean``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import selectors
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

ENGINE_SOCKET = "/var/run/docker.sock"
LAB = Path("/lab")
SECRETS = Path("/run/secrets")
MIRRORED = ("events", "links", "probe", "pcap")  # what the runner reads as the run goes
BINARY_SUFFIXES = (".pcap",)  # sent as base64
MIRROR_PERIOD_S = 0.1
CHUNK = 1 << 16


def tls_context(cert: Path = SECRETS / "p2plab-agent-cert",
                key: Path = SECRETS / "p2plab-agent-key",
                ca: Path = SECRETS / "p2plab-ca") -> ssl.SSLContext:
    """Only clients with a certificate of the run's CA (its runner) get through."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(ca)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def serve(port: int, handler: Callable[[ssl.SSLSocket], None],
          context: ssl.SSLContext) -> None:
    listener = socket.create_server(("0.0.0.0", port), reuse_port=False)
    while True:
        raw, _ = listener.accept()
        threading.Thread(target=_handshake_then, args=(raw, handler, context),
                         daemon=True).start()


def _handshake_then(raw: socket.socket, handler: Callable[[ssl.SSLSocket], None],
                    context: ssl.SSLContext) -> None:
    try:
        conn = context.wrap_socket(raw, server_side=True)
    except (ssl.SSLError, OSError):
        raw.close()  # no valid client certificate: nothing more is said
        return
    try:
        handler(conn)
    except (OSError, ssl.SSLError):
        pass
    finally:
        conn.close()


# -- the Docker API, relayed ---------------------------------------------------------
def relay_engine(conn: ssl.SSLSocket) -> None:
    """Bytes both ways between the runner and the engine's socket, in one thread (an
    SSL socket must not be read and written from two). The runner closing its side
    (stdin at its end, in ``docker run -i``) closes only the engine's write side: the
    engine's answer still comes back until the engine closes."""
    engine = socket.socket(socket.AF_UNIX)
    engine.connect(ENGINE_SOCKET)
    selector = selectors.DefaultSelector()
    selector.register(conn, selectors.EVENT_READ, "runner")
    selector.register(engine, selectors.EVENT_READ, "engine")
    runner_open = True
    try:
        while True:
            for key, _ in selector.select():
                if key.data == "engine":
                    data = engine.recv(CHUNK)
                    if not data:
                        return
                    conn.sendall(data)
                    continue
                data = conn.recv(CHUNK)
                while data and conn.pending():  # decrypted bytes select cannot see
                    data += conn.recv(conn.pending())
                if data:
                    engine.sendall(data)
                elif runner_open:
                    runner_open = False
                    selector.unregister(conn)
                    engine.shutdown(socket.SHUT_WR)
    finally:
        engine.close()


# -- p2plab's own lines --------------------------------------------------------------
def lines(conn: ssl.SSLSocket) -> None:
    reader = conn.makefile("rb")
    while line := reader.readline():
        words = line.decode().split()
        if words == ["time"]:
            conn.sendall(f"{time.time_ns()}\n".encode())
        elif words == ["mirror"]:
            mirror(conn)
            return
        elif len(words) == 2 and words[0] == "send":
            command = reader.readline().decode()
            conn.sendall((send(words[1], command) + "\n").encode())
        else:
            conn.sendall(b"error: unknown request\n")


def send(node: str, command: str) -> str:
    from p2plab.control import ControlError, send_command

    try:
        send_command(LAB / "control" / f"{node}.fifo", json.loads(command))
    except (ControlError, ValueError) as exc:
        return f"error: {exc}"
    return "ok"


def mirror(conn: ssl.SSLSocket) -> None:
    """Every file under MIRRORED as it grows, as JSON lines {path, data, reset,
    base64}; whole lines only for event logs (a node's line is never split across two
    messages); packet captures in base64."""
    offsets: dict[Path, int] = {}
    while True:
        out = []
        for folder in MIRRORED:
            for path in sorted((LAB / folder).glob("*")):
                if not path.is_file():
                    continue
                start = offsets.get(path)
                reset = False
                try:
                    if start is not None and path.stat().st_size < start:
                        start, reset = 0, True  # rewritten (a stage's statistics)
                    with open(path, "rb") as fh:
                        fh.seek(start or 0)
                        data = fh.read()
                except OSError:
                    continue
                if path.suffix == ".jsonl":
                    data = data[: data.rfind(b"\n") + 1]
                if data or start is None or reset:
                    offsets[path] = (start or 0) + len(data)
                    binary = path.suffix in BINARY_SUFFIXES
                    text = (base64.b64encode(data).decode() if binary
                            else data.decode(errors="replace"))
                    out.append(json.dumps({"path": f"{folder}/{path.name}", "reset": reset,
                                           "data": text, "base64": binary}))
        if out:
            conn.sendall(("\n".join(out) + "\n").encode())
        time.sleep(MIRROR_PERIOD_S)


# -- the sweep -----------------------------------------------------------------------
class EngineConnection(http.client.HTTPConnection):
    def __init__(self) -> None:
        super().__init__("localhost", timeout=60)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(ENGINE_SOCKET)


def engine_call(method: str, path: str) -> Any:
    conn = EngineConnection()
    conn.request(method, path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    if response.status >= 400 and response.status != 404:
        raise RuntimeError(f"{method} {path}: {response.status} {body[:200]!r}")
    return json.loads(body) if body and response.status < 300 else None


def sweep(run_id: str) -> int:
    """Remove the run's containers, then its volumes."""
    label = f"p2plab.run={run_id}"
    selector = quote(json.dumps({"label": [label]}))
    for container in engine_call("GET", f"/containers/json?all=1&filters={selector}") or []:
        engine_call("DELETE", f"/containers/{container['Id']}?force=1&v=1")
        print(f"removed container {container['Names'][0].lstrip('/')}")
    volumes = (engine_call("GET", f"/volumes?filters={selector}") or {}).get("Volumes") or []
    for volume in volumes:
        engine_call("DELETE", f"/volumes/{volume['Name']}?force=1")
        print(f"removed volume {volume['Name']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="p2plab-agent")
    parser.add_argument("--port", type=int, default=int(os.environ.get("P2PLAB_AGENT_PORT", 0)))
    parser.add_argument("--sweep", metavar="RUN", help="remove a run's objects and exit")
    args = parser.parse_args(argv)
    if args.sweep:
        return sweep(args.sweep)
    if not args.port:
        parser.error("--port (or P2PLAB_AGENT_PORT) is required")
    for folder in (*MIRRORED, "control", "routers"):
        (LAB / folder).mkdir(parents=True, exist_ok=True)  # the run's folder, this engine's part
    context = tls_context()
    threading.Thread(target=serve, args=(args.port + 1, lines, context), daemon=True).start()
    print(f"p2plab-agent: listening on {args.port} (engine) and {args.port + 1} (lines)",
          flush=True)
    serve(args.port, relay_engine, context)
    return 0


if __name__ == "__main__":
    sys.exit(main())
