"""The small events passed between stages (pickled over local ZeroMQ sockets).

Frames and flow fields never travel in these; they stay in shared memory (stream.runtime.shm). New frames
are announced by the frame ring's counter and a doorbell byte (stream.runtime.doorbell), not by an event.
What the pipeline publishes (schema 1) is defined in stream.core.wire.
"""
from __future__ import annotations

from dataclasses import dataclass


# --- between stages --------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceEnded:
    source: int
    frames: int  # frames the capture delivered in total
    error: str = ""


@dataclass(frozen=True)
class WindowReady:
    source: int
    end_index: int  # flow-ring slot index of the newest flow of the window
    frame: int  # newest frame index
    t_capture: float
    t_flow: float  # when its newest flow was written
    gap_frames: int = 0  # frames missed just before this window's chain (after a reconnect)
    gap_seconds: float = 0.0


@dataclass(frozen=True)
class WindowsEnded:
    source: int
    frames: int
    windows: int
    error: str = ""


@dataclass
class WindowResult:
    source: int
    frame: int
    t_capture: float
    t_flow: float
    t_infer_start: float
    t_infer_end: float
    spatial: list[float]  # probabilities (two-stream bundles; [] when `streams` is given)
    temporal: list[float]
    fused: list[float]
    batch: int
    gap_frames: int = 0
    gap_seconds: float = 0.0
    streams: dict[str, list[float]] | None = None  # probabilities per network name (not spatial + temporal)

