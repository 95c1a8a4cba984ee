"""Writing one command to a node's control FIFO (docs/reference/node-contract.md, Control channel).

A pipe holds 64 KiB: a longer command (a publish schedule of thousands of send times)
is written in pieces as the node reads, and a node that stops reading gets a clear
error after ``timeout`` instead of a silently truncated line or an uncaught EAGAIN.
"""

from __future__ import annotations

import errno
import json
import os
import select
import time
from pathlib import Path
from typing import Any


class ControlError(Exception):
    """The node could not be given the command (no FIFO reader, or it stopped reading)."""


def send_command(fifo: Path, command: dict[str, Any], timeout: float = 10.0) -> None:
    data = (json.dumps(command, separators=(",", ":")) + "\n").encode()
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            # ENXIO: nobody has it open for reading yet (the node is starting).
            if exc.errno not in (errno.ENXIO, errno.ENOENT) or time.monotonic() > deadline:
                raise ControlError(f"cannot open the control FIFO {fifo}: {exc.strerror}") from None
            time.sleep(0.05)
    try:
        view = memoryview(data)
        while view:
            try:
                written = os.write(fd, view)
                view = view[written:]
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([], [fd], [], left)[1]:
                    raise ControlError(
                        f"the node stopped reading its control FIFO {fifo} with "
                        f"{len(view)} of {len(data)} bytes of a command unwritten") from None
            except BrokenPipeError:
                raise ControlError(f"the node closed its control FIFO {fifo}") from None
    finally:
        os.close(fd)
