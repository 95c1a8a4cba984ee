"""Entry point: ``python -m p2plab.node`` (installed as ``p2plab-node``)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

import trio
from p2plab.node.config import NodeConfig, UsageError, VersionRequested, parse_args, version_line
from p2plab.node.relay_limits import unsupported as unsupported_relay_limits

if TYPE_CHECKING:
    from p2plab.events import EventWriter  # imported at run time only once flags are checked

# On SIGTERM the node has this long to shut libp2p down before it exits anyway.
SHUTDOWN_GRACE_S = 1.5


async def _run(config: NodeConfig) -> int:
    from p2plab.node import libp2p_tuning
    from p2plab.node.chat import ChatNode  # libp2p import is slow: only after flags are checked

    from p2plab.events import EventWriter

    tuning = libp2p_tuning.apply()

    events = EventWriter.open(config.name, config.events) if config.events else None
    node = ChatNode(config, events, sys.stdout, tuning)
    stop_reason = "quit"
    async with trio.open_nursery() as nursery:

        async def watch_signals() -> None:
            nonlocal stop_reason
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    stop_reason = signal.Signals(signum).name
                    # libp2p's shutdown can stall on a dead peer: never let it hold us.
                    timer = threading.Timer(SHUTDOWN_GRACE_S, _hard_exit, args=(events,))
                    timer.daemon = True
                    timer.start()
                    nursery.cancel_scope.cancel()
                    return

        nursery.start_soon(watch_signals)
        await node.run()
        nursery.cancel_scope.cancel()
    if events is not None:
        events.emit("node_stopped", reason=stop_reason)
        events.close()
    return 0


def _hard_exit(events: EventWriter | None) -> None:
    if events is not None:
        try:
            events.emit("node_stopped", reason="SIGTERM (forced after grace period)")
            events.close()
        except Exception:
            pass
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_args(sys.argv[1:] if argv is None else argv)
    except VersionRequested:
        print(version_line())
        return 0
    except UsageError as exc:
        print(f"p2plab-node: {exc}", file=sys.stderr)
        return 2
    refusal = unsupported_relay_limits(config.relay_limits)
    if refusal is not None:
        print(f"p2plab-node: {refusal}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return trio.run(_run, config)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
