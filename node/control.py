"""The command channel: JSON lines from a FIFO, the same for a namespace process and
a container with a mounted run directory, so the lab needs no control network.

Commands (one JSON object a line):
  {"cmd": "publish", "count": N, "size": BYTES, "rate": PER_SECOND, "topic": T?,
   "offsets": [SECONDS, ...]?, "flow": NAME?}
  {"cmd": "stop-traffic", "flow": NAME or "all"}
  {"cmd": "say", "text": "..."}
  {"cmd": "dial", "addr": MULTIADDR}
  {"cmd": "ping", "peer": PEER_ID, "count": N}
  {"cmd": "quit"}
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio


class CommandError(ValueError):
    pass


REQUIRED: dict[str, tuple[str, ...]] = {
    "publish": ("count", "size", "rate"),
    "stop-traffic": ("flow",),
    "say": ("text",),
    "dial": ("addr",),
    "ping": ("peer",),
    "quit": (),
}


def parse_command(line: str) -> dict[str, Any]:
    try:
        command = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CommandError(f"not JSON: {exc}") from None
    if not isinstance(command, dict) or command.get("cmd") not in REQUIRED:
        raise CommandError(f"expected an object with cmd in {sorted(REQUIRED)}")
    missing = [k for k in REQUIRED[command["cmd"]] if k not in command]
    if missing:
        raise CommandError(f"{command['cmd']} needs {missing}")
    return command


def open_fifo(path: Path) -> trio.lowlevel.FdStream:
    """Open (creating if needed) a FIFO for reading without ever seeing EOF.

    Opening read-write keeps one writer alive, so the runner can open, write and
    close the FIFO as often as it likes.
    """
    if not path.exists():
        os.mkfifo(path, 0o600)
    elif not stat.S_ISFIFO(path.stat().st_mode):
        raise CommandError(f"{path} exists and is not a FIFO")
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    return trio.lowlevel.FdStream(fd)


async def lines(stream: trio.abc.ReceiveStream) -> AsyncIterator[str]:
    """Split a byte stream into text lines."""
    buffer = b""
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            if buffer:
                yield buffer.decode("utf-8", "replace")
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode("utf-8", "replace")
