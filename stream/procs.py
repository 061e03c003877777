"""Small process helpers shared by the stage processes."""
from __future__ import annotations

import signal


def ignore_interrupts() -> None:
    """Stages ignore Ctrl-C (sent to the whole process group): the supervisor decides how to drain and stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
