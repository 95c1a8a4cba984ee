"""Measure a round trip between two lab hosts with UDP echoes (stdlib only).

The lab runs ``serve`` in one host's namespace and ``ping`` in another's, before the
timeline starts, to compare each impaired link's configured round trip with what the
packets actually see (libp2p's own ping adds the stack's time and is no yardstick).

  python -m p2plab.linkcheck serve --ip 10.1.0.10 --port 9 --seconds 20
  python -m p2plab.linkcheck ping --ip 203.0.113.5 --port 9 --count 20
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import time

PORT = 7


def serve(ip: str, port: int, seconds: float) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ip, port))
    print("listening", flush=True)  # the runner pings only once the echo is up
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data, addr = sock.recvfrom(2048)
        except TimeoutError:
            break
        sock.sendto(data, addr)
    return 0


def ping(ip: str, port: int, count: int, interval: float, timeout: float) -> dict[str, object]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    rtts: list[float] = []
    for seq in range(count):
        payload = seq.to_bytes(4, "big") + b"p2plab"
        start = time.perf_counter()
        sock.sendto(payload, (ip, port))
        try:
            while True:
                data, _ = sock.recvfrom(2048)
                if data == payload:
                    rtts.append((time.perf_counter() - start) * 1000)
                    break
        except TimeoutError:
            pass
        time.sleep(interval)
    return {"sent": count, "received": len(rtts),
            "min_ms": round(min(rtts), 3) if rtts else None,
            "median_ms": round(statistics.median(rtts), 3) if rtts else None,
            "max_ms": round(max(rtts), 3) if rtts else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m p2plab.linkcheck")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--ip", required=True)
    s.add_argument("--port", type=int, default=PORT)
    s.add_argument("--seconds", type=float, default=20)
    p = sub.add_parser("ping")
    p.add_argument("--ip", required=True)
    p.add_argument("--port", type=int, default=PORT)
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        return serve(args.ip, args.port, args.seconds)
    print(json.dumps(ping(args.ip, args.port, args.count, args.interval, args.timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
