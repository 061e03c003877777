"""Sliding-window arithmetic, shared by the flow stage, tests and evaluation.

Flow i lies between frames i-1 and i (i >= 1). A window is L consecutive flows
plus the newest frame. The first window closes at frame L; after that one closes
every `stride` frames. For a file of F frames read in fast pace that gives
window_count(F, L, stride) windows, ending at frames L, L+stride, L+2*stride, ...
"""
from __future__ import annotations


def window_count(frames: int, flow_length: int, stride: int) -> int:
    """Number of windows for `frames` consecutive frames: 0 if F <= L else floor((F-1-L)/stride) + 1."""
    if frames <= flow_length:
        return 0
    return (frames - 1 - flow_length) // stride + 1


def window_end_frames(frames: int, flow_length: int, stride: int) -> list[int]:
    """Newest-frame index of every window, in order."""
    return [flow_length + k * stride for k in range(window_count(frames, flow_length, stride))]


class WindowClock:
    """Decides, flow by flow, when a window closes; reset() after a gap so windows never span it."""

    def __init__(self, flow_length: int, stride: int):
        self.flow_length = flow_length
        self.stride = stride
        self.reset()

    def reset(self) -> None:
        self.chain = 0  # consecutive flows since the last reset
        self.since_window = 0

    def add_flow(self) -> bool:
        """Count one new flow; True when it closes a window."""
        self.chain += 1
        self.since_window += 1
        if self.chain < self.flow_length:
            return False
        if self.chain == self.flow_length or self.since_window >= self.stride:
            self.since_window = 0
            return True
        return False
