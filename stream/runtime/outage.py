"""What the inference stage does while a remote engine (Triton) cannot answer.

The pipeline never dies because the inference server went away:
  - live sources: a batch that cannot be run is dropped and counted (windows_dropped), so when the
    server returns the predictions describe the present, not a backlog;
  - files in fast pace: the batch waits (retrying) up to [engine] outage_file_wait seconds, then its
    windows are dropped and counted too, so a server that never returns cannot hang a run forever;
  - reconnect attempts back off exponentially (0.1 s doubling to [engine] outage_backoff_max), and
    between attempts live batches are dropped without touching the network;
  - the stats board's `engine_down` column (written only here) makes the supervisor's status messages
    say `"engine_state": "unavailable"` for every source.
Seq numbers live in the publisher, which only sees results, so they simply continue after an outage.
Local engines never raise EngineUnavailable: for them this is one try/except per batch.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

from engines.base import EngineUnavailable

log = logging.getLogger("twostream")
T = TypeVar("T")


class OutageGuard:
    def __init__(self, stats, sources: int, *, file_wait: float = 60.0, backoff_max: float = 5.0,
                 backoff_initial: float = 0.1, stop: Callable[[], bool] = lambda: False, clock=time.monotonic,
                 sleep=time.sleep):
        self.stats = stats
        self.sources = sources
        self.file_wait = file_wait
        self.backoff_initial = min(backoff_initial, backoff_max)
        self.backoff_max = backoff_max
        self.stop = stop
        self.clock = clock
        self.sleep = sleep
        self.down_since: float | None = None
        self.next_try = 0.0
        self.backoff = self.backoff_initial
        self.outages = 0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def _mark_down(self, exc: EngineUnavailable) -> None:
        now = self.clock()
        if self.down_since is None:
            self.down_since = now
            self.outages += 1
            self.backoff = self.backoff_initial
            log.warning("engine unavailable: %s; live windows are dropped, files wait up to %.0f s",
                        exc, self.file_wait)
            if self.stats is not None:
                for i in range(self.sources):
                    self.stats.set(i, "engine_down", 1)
        else:
            self.backoff = min(self.backoff * 2, self.backoff_max)
        self.next_try = now + self.backoff

    def _mark_up(self) -> None:
        log.warning("engine available again after %.1f s", self.clock() - self.down_since)
        self.down_since = None
        self.backoff = self.backoff_initial
        if self.stats is not None:
            for i in range(self.sources):
                self.stats.set(i, "engine_down", 0)

    def run(self, fn: Callable[[], T], *, wait: bool) -> T | None:
        """fn()'s result, or None when the batch must be dropped (engine down; wait=False, or waited too long).

        wait: the batch holds windows of a file in fast pace (they must not be lost lightly).
        """
        deadline = None
        while True:
            now = self.clock()
            if self.down and now < self.next_try:
                if not wait or self.stop():
                    return None
                if deadline is None:
                    deadline = now + self.file_wait
                if now >= deadline:
                    log.warning("engine still unavailable after %.0f s: dropping a batch of file windows",
                                self.file_wait)
                    return None
                self.sleep(max(0.0, min(self.next_try, deadline) - now))
                continue
            try:
                result = fn()
            except EngineUnavailable as exc:
                self._mark_down(exc)
                if not wait:
                    return None
                continue
            if self.down:
                self._mark_up()
            return result
