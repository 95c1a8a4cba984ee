"""A userspace link stage: delay, jitter, loss and bandwidth for kernels without netem.

Run inside a node's network namespace. Every packet the node sends (queue 0) or
receives (queue 1) is handed to this process by iptables' NFQUEUE target, held until
its departure time, then accepted, or dropped by the loss draw. Per direction:
departure = max(arrival, link free) + size / bandwidth, then + latency + jitter (a
uniform draw in ±jitter), as a serialising link followed by a propagation delay.
Draws come from the seed given, so a run repeats its losses in order.

  python -m p2plab.compose.lab.linkstage --latency-ms 25 --loss-pct 5 --bandwidth-kbit 1000 \
      --seed lab:1:alice --ready-file /run/.../alice.ready
"""

from __future__ import annotations

import argparse
import heapq
import random
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

EGRESS_QUEUE, INGRESS_QUEUE = 0, 1
MAX_BACKLOG = 1000  # packets per direction, like netem's default limit
RULES = (
    ("OUTPUT", "-o", EGRESS_QUEUE),
    ("INPUT", "-i", INGRESS_QUEUE),
)


def iptables_rule(chain: str, flag: str, queue: int) -> list[str]:
    """The mangle-table rule (after -A or -D) that queues a direction's packets."""
    return [chain, "-t", "mangle", "!", flag, "lo", "-j", "NFQUEUE", "--queue-num", str(queue)]


class Direction:
    def __init__(self, name: str, args: argparse.Namespace, rng: random.Random) -> None:
        self.name = name
        self.latency = args.latency_ms / 1000.0
        self.jitter = args.jitter_ms / 1000.0
        self.loss = args.loss_pct / 100.0
        self.byte_time = 8.0 / (args.bandwidth_kbit * 1000.0) if args.bandwidth_kbit else 0.0
        self.rng = rng
        self.free_at = 0.0
        self.backlog = 0
        self.counts = {"passed": 0, "lost": 0, "overflow": 0}

    def departure(self, now: float, size: int) -> float | None:
        """When a packet of ``size`` bytes leaves, or None to drop it."""
        if self.loss and self.rng.random() < self.loss:
            self.counts["lost"] += 1
            return None
        if self.backlog >= MAX_BACKLOG:
            self.counts["overflow"] += 1
            return None
        start = max(now, self.free_at)
        self.free_at = start + size * self.byte_time
        jitter = self.rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0
        self.counts["passed"] += 1
        return self.free_at + self.latency + jitter


def run(args: argparse.Namespace) -> int:
    from netfilterqueue import NetfilterQueue

    rng = random.Random(args.seed)
    directions = {EGRESS_QUEUE: Direction("egress", args, rng),
                  INGRESS_QUEUE: Direction("ingress", args, rng)}
    held: list[tuple[float, int, Any, Direction]] = []  # (due, order, packet, direction)
    order = 0

    def handler(queue: int) -> Callable[[Any], None]:
        direction = directions[queue]

        def on_packet(packet: Any) -> None:
            nonlocal order
            due = direction.departure(time.monotonic(), packet.get_payload_len())
            if due is None:
                packet.drop()
                return
            packet.retain()
            direction.backlog += 1
            order += 1
            heapq.heappush(held, (due, order, packet, direction))
        return on_packet

    queues = []
    selector = selectors.DefaultSelector()
    for queue in (EGRESS_QUEUE, INGRESS_QUEUE):
        nfq = NetfilterQueue()
        nfq.bind(queue, handler(queue), max_len=4096)
        queues.append(nfq)
        selector.register(nfq.get_fd(), selectors.EVENT_READ, nfq)
    installed = []
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for rule in RULES:
            subprocess.run(["iptables", "-A", *iptables_rule(*rule)], check=True)
            installed.append(rule)
        if args.ready_file:
            Path(args.ready_file).write_text("ready\n")
        while not stopping:
            now = time.monotonic()
            while held and held[0][0] <= now:
                _, _, packet, direction = heapq.heappop(held)
                direction.backlog -= 1
                packet.accept()
            timeout = max(0.0, held[0][0] - time.monotonic()) if held else 0.5
            for key, _ in selector.select(timeout):
                key.data.run(block=False)
    finally:
        for rule in installed:
            subprocess.run(["iptables", "-D", *iptables_rule(*rule)], check=False)
        for _, _, packet, _direction in held:
            packet.accept()
        for nfq in queues:
            nfq.unbind()
        if args.stats_file:
            import json

            Path(args.stats_file).write_text(json.dumps(
                {d.name: d.counts for d in directions.values()}) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m p2plab.compose.lab.linkstage",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--loss-pct", type=float, default=0.0)
    parser.add_argument("--bandwidth-kbit", type=int, default=0)
    parser.add_argument("--seed", default="0")
    parser.add_argument("--ready-file", default=None)
    parser.add_argument("--stats-file", default=None)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
