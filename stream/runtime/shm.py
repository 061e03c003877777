"""Shared-memory ring buffers: frames and flow fields move between processes here, never through pickles.

One writer and one reader per ring. The header holds two counters, `written` (slots
ever written) and `consumed` (the reader's position, for back-pressure), and every slot
carries the index it was written for, so a reader can tell a slot that was
overwritten while it copied (live sources never wait for a slow reader).
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

_HEADER = 2  # int64: written, consumed
_META = 5  # float64 per slot: index, frame, t_capture, t_ready, epoch


@dataclass(frozen=True)
class RingLayout:
    """Fixed shapes of one ring; picklable so a child process can attach by name."""

    name: str
    slots: int
    fields: tuple[tuple[str, tuple[int, ...]], ...]  # uint8 arrays per slot, e.g. (("frame", (112, 112, 3)),)

    def nbytes(self) -> int:
        size = _HEADER * 8 + self.slots * _META * 8
        for _, shape in self.fields:
            size += self.slots * int(np.prod(shape))
        return size


class SlotOverwritten(Exception):
    """The writer lapped the reader while it was copying a slot."""


class ShmRing:
    """A ring of `slots` entries, each a set of uint8 arrays plus metadata, in one shared-memory segment."""

    def __init__(self, layout: RingLayout, *, create: bool):
        self.layout = layout
        if create:
            self._shm = shared_memory.SharedMemory(name=layout.name, create=True, size=layout.nbytes())
        else:
            # Attaching registers the name again with the resource tracker that spawned children share
            # with the supervisor (a no-op on its set); the supervisor alone unlinks, and the tracker
            # removes the segments if the supervisor itself is killed.
            self._shm = shared_memory.SharedMemory(name=layout.name)
        buf = self._shm.buf
        self._header = np.ndarray((_HEADER,), dtype=np.int64, buffer=buf, offset=0)
        offset = _HEADER * 8
        self._meta = np.ndarray((layout.slots, _META), dtype=np.float64, buffer=buf, offset=offset)
        offset += layout.slots * _META * 8
        self._arrays: dict[str, np.ndarray] = {}
        for field, shape in layout.fields:
            arr = np.ndarray((layout.slots, *shape), dtype=np.uint8, buffer=buf, offset=offset)
            self._arrays[field] = arr
            offset += arr.nbytes
        if create:
            self._header[:] = 0
            self._meta[:, 0] = -1

    @staticmethod
    def new_name(prefix: str = "ts") -> str:
        return f"{prefix}_{secrets.token_hex(6)}"

    # counters -----------------------------------------------------------------------------
    @property
    def written(self) -> int:
        return int(self._header[0])

    @property
    def consumed(self) -> int:
        return int(self._header[1])

    def set_consumed(self, value: int) -> None:
        self._header[1] = value

    def reset(self) -> None:
        """Forget positions (used by a restarted stage, never while a peer is writing)."""
        self._header[:] = 0
        self._meta[:, 0] = -1

    # writer -------------------------------------------------------------------------------
    def free_slots(self) -> int:
        return self.layout.slots - (self.written - self.consumed)

    def wait_for_space(self, stop=None, poll: float = 0.001) -> bool:
        """Block (fast pace) until a slot is free; False if `stop` (an Event) was set meanwhile."""
        while self.free_slots() <= 0:
            if stop is not None and stop.is_set():
                return False
            time.sleep(poll)
        return True

    def write(self, *, frame: int, t_capture: float, t_ready: float = 0.0, epoch: int = 0, **arrays: np.ndarray) -> int:
        """Write one slot (overwriting the oldest when full) and publish it; returns its index.

        `epoch` changes when the writer's stream restarts (a reconnect), so a reader can tell exactly
        at which slot a gap lies without waiting for a message."""
        index = self.written
        slot = index % self.layout.slots
        self._meta[slot, 0] = -1  # mark in progress so a concurrent reader rejects the copy
        for field, value in arrays.items():
            self._arrays[field][slot] = value
        self._meta[slot, 1:] = (frame, t_capture, t_ready, epoch)
        self._meta[slot, 0] = index
        self._header[0] = index + 1
        return index

    # reader -------------------------------------------------------------------------------
    def meta(self, index: int) -> tuple[int, float, float, int]:
        """(frame, t_capture, t_ready, epoch) of slot `index`; raises SlotOverwritten when it no longer holds it."""
        slot = index % self.layout.slots
        row = self._meta[slot].copy()
        if int(row[0]) != index:
            raise SlotOverwritten(index)
        return int(row[1]), float(row[2]), float(row[3]), int(row[4])

    def read(self, index: int, field: str, out: np.ndarray | None = None) -> np.ndarray:
        """Copy one field of slot `index` (into `out` if given), checking it was not overwritten meanwhile."""
        slot = index % self.layout.slots
        if int(self._meta[slot, 0]) != index:
            raise SlotOverwritten(index)
        src = self._arrays[field][slot]
        if out is None:
            out = src.copy()
        else:
            out[...] = src
        if int(self._meta[slot, 0]) != index:
            raise SlotOverwritten(index)
        return out

    def close(self) -> None:
        self._header = self._meta = None  # type: ignore[assignment]
        self._arrays.clear()
        try:
            self._shm.close()
        except BufferError:
            pass  # a caller still holds a view; the mapping goes away with the process

    def unlink(self) -> None:
        try:
            self._shm.unlink()
        except FileNotFoundError:
            pass


STAT_FIELDS = (
    "state",  # capture state code, see STATES
    "frames",  # frames captured (decoded and written to the frame ring)
    "dropped",  # frames the flow stage skipped (live sources only: latest-frame semantics)
    "flows",  # flow fields computed
    "windows",  # windows closed by the flow stage
    "windows_dropped",  # windows skipped by inference to stay real-time (live sources only)
    "reconnects",  # successful re-opens after a failure
    "attempts",  # failed open attempts since the last success
    "t_last_frame",  # unix time of the last captured frame
    "gap_frames",  # frames missed in the last gap (reconnect), for the next prediction's `gap` field
    "gap_seconds",
    "last_error",  # why a live source last failed, code into LAST_ERRORS (for status messages)
    "engine_down",  # 1 while a remote engine (Triton) is unavailable; written by inference (stream.runtime.outage)
)
STATES = ("starting", "live", "reconnecting", "ended", "failed")
LAST_ERRORS = ("", "cannot open", "read failed", "stalled")


class StatsBoard:
    """Per-source counters in shared memory; each column has exactly one writing process."""

    def __init__(self, name: str, sources: int, *, create: bool):
        size = max(1, sources) * len(STAT_FIELDS) * 8
        if create:
            self._shm = shared_memory.SharedMemory(name=name, create=True, size=size)
        else:
            self._shm = shared_memory.SharedMemory(name=name)
        self.name = name
        self._table = np.ndarray((max(1, sources), len(STAT_FIELDS)), dtype=np.float64, buffer=self._shm.buf)
        if create:
            self._table[:] = 0
        self._col = {f: i for i, f in enumerate(STAT_FIELDS)}

    def set(self, source: int, field: str, value: float) -> None:
        self._table[source, self._col[field]] = value

    def add(self, source: int, field: str, value: float = 1) -> None:
        self._table[source, self._col[field]] += value

    def get(self, source: int, field: str) -> float:
        return float(self._table[source, self._col[field]])

    def set_state(self, source: int, state: str) -> None:
        self.set(source, "state", STATES.index(state))

    def state(self, source: int) -> str:
        return STATES[int(self.get(source, "state"))]

    def set_error(self, source: int, error: str) -> None:
        self.set(source, "last_error", LAST_ERRORS.index(error))

    def last_error(self, source: int) -> str:
        return LAST_ERRORS[int(self.get(source, "last_error"))]

    def row(self, source: int) -> dict[str, float]:
        return {f: float(v) for f, v in zip(STAT_FIELDS, self._table[source], strict=True)}

    def close(self) -> None:
        self._table = None  # type: ignore[assignment]
        try:
            self._shm.close()
        except BufferError:
            pass

    def unlink(self) -> None:
        try:
            self._shm.unlink()
        except FileNotFoundError:
            pass
