"""The NAT probe: p2plab's own STUN-like reflectors and the client that classifies a NAT.

Two reflectors sit on the public segment at different addresses, each on two ports, for
UDP and TCP. A client behind a NAT asks them what address they see it at, from one
local port, towards different addresses and ports (mapping), and asks them to answer
from another port or another address (filtering); it also tries to reach its own
public address from inside (hairpinning). Standard library only: it runs in every
lab host, namespace or container.

    python -m p2plab.natprobe serve --ip A --peer B --ports 3478,3479 --ready-file F
    python -m p2plab.natprobe classify --stun A --stun B --ports 3478,3479
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

WAIT_S = 1.0  # how long an answer that may legitimately be filtered is awaited


# -- reflector ---------------------------------------------------------------------------

class Reflector:
    def __init__(self, ip: str, peer: str, ports: list[int]) -> None:
        self.ip, self.peer, self.ports = ip, peer, ports
        self.udp = {}
        for port in ports:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((ip, port))
            self.udp[port] = s
        self.tcp = {}
        for port in ports:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((ip, port))
            s.listen(64)
            self.tcp[port] = s

    def other_port(self, port: int) -> int:
        return next(p for p in self.ports if p != port)

    def serve_udp(self, port: int) -> None:
        sock = self.udp[port]
        while True:
            data, addr = sock.recvfrom(2048)
            try:
                msg = json.loads(data)
                op = msg["op"]
            except (ValueError, KeyError, TypeError):
                continue
            token = msg.get("token")
            if op == "map":
                sock.sendto(json.dumps({"token": token, "ip": addr[0], "port": addr[1]}).encode(),
                            addr)
            elif op == "reply" and msg.get("via") == "other-port":
                self.udp[self.other_port(port)].sendto(json.dumps({"token": token}).encode(), addr)
            elif op == "reply" and msg.get("via") == "other-ip":
                relay = {"op": "send", "to": list(addr), "token": token}
                sock.sendto(json.dumps(relay).encode(), (self.peer, self.ports[0]))
            elif op == "send":
                sock.sendto(json.dumps({"token": token}).encode(), tuple(msg["to"]))

    def serve_tcp(self, port: int) -> None:
        while True:
            conn, addr = self.tcp[port].accept()
            threading.Thread(target=self._tcp_session, args=(conn, addr), daemon=True).start()

    def _tcp_session(self, conn: socket.socket, addr: tuple[str, int]) -> None:
        with conn, conn.makefile("rw") as stream:
            for line in stream:
                try:
                    msg = json.loads(line)
                except ValueError:
                    return
                op, token = msg.get("op"), msg.get("token")
                if op == "map":
                    stream.write(json.dumps({"ip": addr[0], "port": addr[1]}) + "\n")
                    stream.flush()
                elif op == "connect-back":
                    to = tuple(msg["to"])
                    if msg.get("via") == "other-ip":
                        _tcp_send((self.peer, self.ports[0]),
                                  {"op": "connect", "to": list(to), "token": token})
                    else:
                        threading.Thread(target=_tcp_send, args=(to, {"token": token}, self.ip),
                                         daemon=True).start()
                    stream.write("{}\n")
                    stream.flush()
                elif op == "connect":
                    threading.Thread(target=_tcp_send, args=(tuple(msg["to"]), {"token": token},
                                                             self.ip), daemon=True).start()
                    return


def _tcp_send(to: tuple[str, int], msg: dict[str, Any], source_ip: str | None = None) -> None:
    """Open a connection (from a fresh port) and send one line; failures are expected."""
    try:
        s = socket.socket()
        s.settimeout(2 * WAIT_S)
        if source_ip:
            s.bind((source_ip, 0))
        s.connect(to)
        s.sendall((json.dumps(msg) + "\n").encode())
        time.sleep(0.2)
        s.close()
    except OSError:
        pass


def serve(ip: str, peer: str, ports: list[int], ready_file: Path | None) -> None:
    reflector = Reflector(ip, peer, ports)
    for port in ports:
        threading.Thread(target=reflector.serve_udp, args=(port,), daemon=True).start()
        threading.Thread(target=reflector.serve_tcp, args=(port,), daemon=True).start()
    if ready_file is not None:
        ready_file.parent.mkdir(parents=True, exist_ok=True)
        ready_file.write_text(f"{ip}\n")
    print(f"natprobe reflector on {ip} ports {ports}", flush=True)
    while True:
        time.sleep(3600)


# -- client --------------------------------------------------------------------------------

def _udp_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    return s


def _udp_ask(sock: socket.socket, dest: tuple[str, int], msg: dict[str, Any],
             wait: float = WAIT_S, tries: int = 1) -> dict[str, Any] | None:
    token = secrets.token_hex(4)
    msg = {**msg, "token": token}
    for _ in range(tries):
        sock.sendto(json.dumps(msg).encode(), dest)
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, _ = sock.recvfrom(2048)
            except TimeoutError:
                break
            reply = json.loads(data)
            if reply.get("token") == token:
                return reply
    return None


def _local_ip(stun: str) -> str:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.connect((stun, 9))  # no packet is sent: this only picks the route's source
    ip = probe.getsockname()[0]
    probe.close()
    return ip


def _mapping(maps: list[tuple[str, int]]) -> str:
    if maps[0] == maps[1] == maps[2]:
        return "endpoint-independent"
    if maps[0] == maps[1]:
        return "address-dependent"
    return "address-and-port-dependent"


def classify_udp(a: str, b: str, p1: int, p2: int) -> dict[str, Any]:
    sock = _udp_socket()
    first = _udp_ask(sock, (a, p1), {"op": "map"}, tries=3, wait=0.5)
    if first is None:
        return {"blocked": True}
    local = (_local_ip(a), sock.getsockname()[1])
    maps = [(first["ip"], first["port"])]
    for dest in ((a, p2), (b, p1)):
        reply = _udp_ask(sock, dest, {"op": "map"}, tries=3, wait=0.5)
        maps.append((reply["ip"], reply["port"]) if reply else ("?", 0))
    result: dict[str, Any] = {"blocked": False, "translated": maps[0] != local,
                              "mapping": _mapping(maps), "mapped": maps, "local": list(local),
                              "port_preserved": maps[0][1] == local[1]}
    s2 = _udp_socket()
    _udp_ask(s2, (a, p1), {"op": "map"}, tries=3, wait=0.5)
    if _udp_ask(s2, (a, p1), {"op": "reply", "via": "other-ip"}) is not None:
        result["filtering"] = "endpoint-independent"
    else:
        s3 = _udp_socket()
        _udp_ask(s3, (a, p1), {"op": "map"}, tries=3, wait=0.5)
        got = _udp_ask(s3, (a, p1), {"op": "reply", "via": "other-port"})
        result["filtering"] = "address-dependent" if got else "address-and-port-dependent"
    s4, s5 = _udp_socket(), _udp_socket()
    mine = _udp_ask(s4, (a, p1), {"op": "map"}, tries=3, wait=0.5)
    token = secrets.token_hex(4)
    if mine is not None:
        s5.sendto(json.dumps({"token": token}).encode(), (mine["ip"], mine["port"]))
        s4.settimeout(WAIT_S)
        try:
            result["hairpin"] = json.loads(s4.recvfrom(2048)[0]).get("token") == token
        except TimeoutError:
            result["hairpin"] = False
    return result


def _tcp_socket(port: int = 0) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("0.0.0.0", port))
    return s


class _Session:
    """A TCP connection to a reflector from a chosen local port, speaking JSON lines."""

    def __init__(self, dest: tuple[str, int], port: int) -> None:
        self.sock = _tcp_socket(port)
        self.sock.settimeout(3)
        self.sock.connect(dest)
        self.stream = self.sock.makefile("rw")

    def ask(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.stream.write(json.dumps(msg) + "\n")
        self.stream.flush()
        return json.loads(self.stream.readline())

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


def _accepts(listener: socket.socket, wait: float) -> bool:
    listener.settimeout(wait)
    try:
        conn, _ = listener.accept()
        conn.close()
        return True
    except TimeoutError:
        return False


def _connect_back(a: str, p1: int, via: str) -> bool:
    listener = _tcp_socket()
    listener.listen(4)
    port = listener.getsockname()[1]
    session = _Session((a, p1), port)
    try:
        mapped = session.ask({"op": "map"})
        session.ask({"op": "connect-back", "via": via, "to": [mapped["ip"], mapped["port"]],
                     "token": secrets.token_hex(4)})
        return _accepts(listener, 2 * WAIT_S)
    finally:
        session.close()
        listener.close()


def classify_tcp(a: str, b: str, p1: int, p2: int) -> dict[str, Any]:
    port = _tcp_socket().getsockname()[1]
    sessions = []
    maps = []
    try:
        for dest in ((a, p1), (a, p2), (b, p1)):
            session = _Session(dest, port)
            sessions.append(session)
            reply = session.ask({"op": "map"})
            maps.append((reply["ip"], reply["port"]))
    except OSError:
        if not maps:
            return {"blocked": True}
        maps += [("?", 0)] * (3 - len(maps))
    finally:
        for session in sessions:
            session.close()
    local = (_local_ip(a), port)
    result: dict[str, Any] = {"blocked": False, "translated": maps[0] != local,
                              "mapping": _mapping(maps), "mapped": maps, "local": list(local),
                              "port_preserved": maps[0][1] == local[1]}
    if _connect_back(a, p1, "other-ip"):
        result["filtering"] = "endpoint-independent"
    elif _connect_back(a, p1, "other-port"):
        result["filtering"] = "address-dependent"
    else:
        result["filtering"] = "address-and-port-dependent"
    listener = _tcp_socket()
    listener.listen(4)
    session = _Session((a, p1), listener.getsockname()[1])
    try:
        mapped = session.ask({"op": "map"})
        try:
            other = socket.create_connection((mapped["ip"], mapped["port"]), timeout=WAIT_S)
            other.close()
            result["hairpin"] = _accepts(listener, WAIT_S)
        except OSError:
            result["hairpin"] = False
    finally:
        session.close()
        listener.close()
    return result


def classify(a: str, b: str, ports: list[int]) -> dict[str, Any]:
    p1, p2 = ports[:2]
    return {"udp": classify_udp(a, b, p1, p2), "tcp": classify_tcp(a, b, p1, p2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="natprobe")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--ip", required=True)
    s.add_argument("--peer", required=True)
    s.add_argument("--ports", default="3478,3479")
    s.add_argument("--ready-file", type=Path)
    c = sub.add_parser("classify")
    c.add_argument("--stun", action="append", required=True)
    c.add_argument("--ports", default="3478,3479")
    args = parser.parse_args(argv)
    ports = [int(p) for p in args.ports.split(",")]
    if args.cmd == "serve":
        serve(args.ip, args.peer, ports, args.ready_file)
        return 0
    if len(args.stun) != 2:
        parser.error("classify needs two --stun addresses")
    print(json.dumps(classify(args.stun[0], args.stun[1], ports)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
