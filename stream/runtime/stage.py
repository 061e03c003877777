"""Small process helpers shared by the stage processes."""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
from pathlib import Path


def ignore_interrupts() -> None:
    """Stages ignore Ctrl-C (sent to the whole process group): the supervisor decides how to drain and stop.

    Also names the process after its stage (ts-flow, ts-inference, ts-capture:N) so `top`/`ps -o comm`
    and tests can tell the stages apart.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    name_process(multiprocessing.current_process().name.replace("twostream-", "ts-"))


def name_process(name: str) -> None:
    """Set the kernel's process name (Linux, 15 characters); a no-op elsewhere."""
    try:
        Path("/proc/self/comm").write_text(name[:15])
    except OSError:
        pass


@contextlib.contextmanager
def quiet_stderr():
    """Silence file descriptor 2 (FFmpeg and OpenCV write there from C) for a probe whose failure we
    report ourselves in one clear line."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def event_sockets(ctx, *, bind: str | None = None, connect: str | None = None, linger_ms: int = 2000):
    """(pull, push) for a stage's local event sockets: PULL bound at `bind`, PUSH connected to `connect`.

    The PUSH side never drops (SNDHWM 0: events are small and bounded by the rings) and lingers
    `linger_ms` at close so an end-of-stream marker is delivered when the stage exits.
    """
    import zmq

    pull = push = None
    if bind is not None:
        pull = ctx.socket(zmq.PULL)
        pull.bind(bind)
    if connect is not None:
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.SNDHWM, 0)
        push.setsockopt(zmq.LINGER, linger_ms)
        push.connect(connect)
    return pull, push


class SharedFlag:
    """A process-shared on/off flag with no lock or condition variable inside.

    multiprocessing.Event is built on a shared Condition: when a process blocked in wait() is
    killed (kill -9 of a capture), a later set() waits forever for it to wake. A plain shared byte
    that waiters poll cannot be left in such a state by a dead process.
    """

    def __init__(self, mp_context):
        self._value = mp_context.RawValue("b", 0)

    def set(self) -> None:
        self._value.value = 1

    def is_set(self) -> bool:
        return bool(self._value.value)

    def wait(self, timeout: float | None = None, poll: float = 0.005) -> bool:
        """Sleep until set (True) or `timeout` seconds passed (False)."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._value.value:
            left = poll if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(poll, left))
        return True
