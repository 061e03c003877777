"""Sliding-window arithmetic, shared by the flow stage, tests and evaluation.

Flow i lies between frames i-1 and i (i >= 1). A window covers its newest frame and the `span`
frames before it: for today's two-stream bundles L consecutive flows plus the newest frame, so
span = L; in general (bundle format 2) span + 1 is the largest history any input needs (clip:
(T-1)*s+1 frames, frame_stack: L+1, flow_stack: L+1, frame: 1; engines.bundle.Bundle.span).
The first window closes at frame span; after that one closes every `stride` frames. For a
file of F frames read in fast pace that gives window_count(F, span, stride) windows, ending at
frames span, span+stride, span+2*stride, ...:

    windows(F, span, stride) = 0 if F <= span else floor((F - 1 - span) / stride) + 1
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
        self.frames = 0  # consecutive frames since the last reset (add_frame)
        self.since_window = 0

    def add_frame(self) -> bool:
        """Count one new frame of the chain (the flow_length given is the span); True when it closes a window.

        For span = L this closes exactly the windows add_flow closes (a chain of n frames holds n-1 flows),
        and it also works for span 0 (frame-only bundles) and for inputs that need past frames, not flows."""
        self.frames += 1
        self.since_window += 1
        if self.frames <= self.flow_length:
            return False
        if self.frames == self.flow_length + 1 or self.since_window >= self.stride:
            self.since_window = 0
            return True
        return False

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
