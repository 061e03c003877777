"""The doorbell pipe between captures and the flow stage (stream.runtime.doorbell)."""
from __future__ import annotations

import multiprocessing as mp
import select

from stream.runtime.doorbell import Doorbell, create_doorbell


def _ring_n(path: str, n: int, rung, done) -> None:
    bell = Doorbell(path)  # a writer that opens before any reader must neither block nor fail
    for _ in range(n):
        bell.ring()
    rung.set()
    done.wait(30)  # a pipe keeps its bytes while any end is open (the flow stage holds one all run)
    bell.close()


def test_bells_from_another_process_wake_the_reader_and_drain_counts_them(tmp_path):
    path = create_doorbell(str(tmp_path / "frames.bell"))
    ctx = mp.get_context("spawn")
    rung, done = ctx.Event(), ctx.Event()
    writer = ctx.Process(target=_ring_n, args=(path, 5, rung, done))
    writer.start()
    assert rung.wait(30)
    reader = Doorbell(path)
    try:
        # the bytes were kept although the reader opened only after they were written
        assert select.select([reader.fileno()], [], [], 1.0)[0] == [reader.fileno()]
        assert reader.drain() == 5
        assert select.select([reader.fileno()], [], [], 0.05)[0] == []  # drained: poll sleeps again
        assert reader.drain() == 0
    finally:
        done.set()
        writer.join(30)
        reader.close()
    assert writer.exitcode == 0


def test_a_full_pipe_never_blocks_or_raises(tmp_path):
    path = create_doorbell(str(tmp_path / "frames.bell"))
    bell = Doorbell(path)
    try:
        for _ in range(70_000):  # more than the 64 KiB a pipe holds: the extra rings are dropped silently
            bell.ring()
        drained = bell.drain()
        assert 4096 <= drained < 70_000
        bell.ring()
        assert bell.drain() == 1
    finally:
        bell.close()
