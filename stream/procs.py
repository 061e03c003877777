"""Small process helpers shared by the stage processes."""
from __future__ import annotations

import multiprocessing
import signal
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
