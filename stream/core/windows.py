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
    """Decides, flow by flow, when a window closes; reset() after a gap so windows never span it.

    `phase` (0 <= phase < stride) delays the first window, and so every later one, by that many frames: the
    runtime gives live sources different phases so their windows do not all close on the same frame (see
    stream.runtime.flow_stage.window_phase)."""

    def __init__(self, flow_length: int, stride: int, phase: int = 0):
        if not 0 <= phase < max(stride, 1):
            raise ValueError(f"window phase {phase} must be in 0..stride-1 (stride {stride})")
        self.flow_length = flow_length
        self.stride = stride
        self.phase = phase
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
        first = self.flow_length + 1 + self.phase
        if self.frames < first:
            return False
        if self.frames == first or self.since_window >= self.stride:
            self.since_window = 0
            return True
        return False

    def add_flow(self) -> bool:
        """Count one new flow; True when it closes a window."""
        self.chain += 1
        self.since_window += 1
        first = self.flow_length + self.phase
        if self.chain < first:
            return False
        if self.chain == first or self.since_window >= self.stride:
            self.since_window = 0
            return True
        return False
