"""Doorbell: how capture processes wake the flow stage for new frames, one byte per frame in a named pipe.

Until 29 Nov 2026 every frame was announced by a pickled ZeroMQ message. Each message woke two extra
threads (the capture's ZeroMQ I/O thread, then the flow stage's) before the flow stage itself; at 32
sources that is 1600 thread wake-ups a second on 2 cores, measured (lag-aware capacity run, steady 12 s
window, utime + stime of the stage processes) as part of the capture stage's 0.86 ms of CPU per frame
against 0.43 ms for its decode + resize alone. A write(2) of one byte wakes the flow stage's poll
directly. The frame itself is announced by the ring's `written` counter (stream.runtime.shm): the flow
stage empties the pipe first and then reads every ring's counter, so a bell rung after the check stays
in the pipe and wakes the next poll; a full pipe (64 KiB of unread rings while the flow stage is down)
loses nothing because the counters are read on every wake-up anyway.

Both ends open the FIFO read-write and non-blocking (Linux): opening never waits for the other end and a
capture that starts before the flow stage, or outlives a restarted one, never blocks or fails.
"""
from __future__ import annotations

import os


def create_doorbell(path: str) -> str:
    """Make the named pipe (mode 0600, in the supervisor's private run folder); returns its path."""
    os.mkfifo(path, 0o600)
    return path


class Doorbell:
    """One end of the doorbell pipe: `ring()` (captures) or `fileno()` + `drain()` (the flow stage)."""

    def __init__(self, path: str):
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)

    def ring(self) -> None:
        try:
            os.write(self._fd, b"\x01")
        except BlockingIOError:  # pipe full: the reader has not woken for 64 Ki frames; the counters still say it
            pass

    def fileno(self) -> int:
        return self._fd

    def drain(self) -> int:
        """Read every pending byte; returns how many (the bells rung since the last drain)."""
        total = 0
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                return total
            total += len(chunk)
            if len(chunk) < 65536:
                return total

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
