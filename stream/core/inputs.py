"""Window inputs of every kind, built in one place for the runtime, evaluation, calibration and benchmarks.

A network declares the inputs it takes from a window (bundle format 2, see engines.bundle):

    frame        (B, 3, S, S)          the newest RGB frame, (x - mean) / std
    flow_stack   (B, 2L, S, S)         the L newest flow fields, dequantised and stacked as stack_flows does
    clip         (B, 3, T, S, S)       T RGB frames at temporal stride s, the newest last, normalised like frame
    frame_stack  (B, 3(L+1), S, S)     L+1 consecutive RGB frames, oldest first, concatenated on channels

Every builder takes the same raw window data, uint8 arrays exactly as the rings hold them:
`rgb` (B, F, S, S, 3) the F newest RGB frames of each window, oldest first, and `flows` (B, Lf, S, S, 2)
the Lf newest quantised flow fields (flow i ends at frame i), oldest first. The inference stage reads
those from shared memory, stream.core.offline slices them from a decoded video, and both then call
build_inputs, so training-side evaluation and the live pipeline see identical numbers.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

INPUT_KINDS = ("frame", "flow_stack", "clip", "frame_stack")


@dataclass(frozen=True)
class InputSpec:
    """One network input: its kind and length (flow_stack: L flows; clip: T frames; frame_stack: L, i.e. L+1
    frames; frame: 1) and, for clip only, the temporal stride between its frames."""

    kind: str
    length: int = 1
    step: int = 1

    def __post_init__(self):
        if self.kind not in INPUT_KINDS:
            raise ValueError(f"unknown input kind {self.kind!r}: expected one of {', '.join(INPUT_KINDS)}")
        if self.length < 1 or self.step < 1:
            raise ValueError(f"{self.kind}: length and step must be >= 1")

    @property
    def frames_back(self) -> int:
        """RGB frames this input needs before the window's newest frame."""
        if self.kind == "clip":
            return (self.length - 1) * self.step
        if self.kind == "frame_stack":
            return self.length
        return 0

    @property
    def flows(self) -> int:
        """Flow fields this input needs (the newest ones)."""
        return self.length if self.kind == "flow_stack" else 0

    @property
    def history(self) -> int:
        """Consecutive frames that must exist before a window can close for this input."""
        return max(self.frames_back + 1, self.flows + 1 if self.flows else 1)

    def shape(self, size: int) -> tuple[int, ...]:
        """Input shape without the batch dimension."""
        if self.kind == "frame":
            return (3, size, size)
        if self.kind == "flow_stack":
            return (2 * self.length, size, size)
        if self.kind == "clip":
            return (3, self.length, size, size)
        return (3 * (self.length + 1), size, size)

    def describe(self) -> str:
        if self.kind == "clip":
            return f"clip(T={self.length}, stride={self.step})"
        if self.kind in ("flow_stack", "frame_stack"):
            return f"{self.kind}(L={self.length})"
        return "frame"


@dataclass(frozen=True)
class WindowNeeds:
    """What one window of a set of networks reads: the newest `frames` RGB frames and `flows` flow fields;
    `span` frames before the newest must exist for a window to close (the window covers span + 1 frames)."""

    frames: int
    flows: int
    span: int

    @property
    def slots(self) -> int:
        """Ring slots one window reads when every frame (with the flow ending at it) has one slot."""
        return max(self.frames, self.flows, 1)


def window_needs(specs: Iterable[InputSpec]) -> WindowNeeds:
    specs = list(specs)
    frames = 1 + max((s.frames_back for s in specs if s.kind != "flow_stack"), default=0)
    if not any(s.kind != "flow_stack" for s in specs):
        frames = 0  # flow only: no RGB frame is read
    flows = max((s.flows for s in specs), default=0)
    span = max((s.history for s in specs), default=1) - 1
    return WindowNeeds(frames=frames, flows=flows, span=span)


def _normalize(rgb: np.ndarray, mean, std) -> np.ndarray:
    """uint8 (..., 3) -> float32 (x - mean) / std, channels last still (same arithmetic as flow.normalize_rgb)."""
    x = rgb.astype(np.float32)
    x -= np.asarray(mean, dtype=np.float32)
    x *= 1.0 / np.asarray(std, dtype=np.float32)
    return x


def stack_flow_batch(flows: np.ndarray, stacking: str) -> np.ndarray:
    """(B, L, H, W, 2) quantised flows -> (B, 2L, H, W) float32, per window exactly stack_flows.

    One window at a time into a preallocated output: the whole-batch transpose was 1.4x slower at batch 16
    (11 vs 8 ms, 112 px, L = 10; a 20 MB working set instead of ~1 MB per window)."""
    if stacking not in ("interleaved", "grouped"):
        raise ValueError(f"unknown stacking {stacking!r}")
    b, length, h, w, _ = flows.shape
    out = np.empty((b, 2 * length, h, w), dtype=np.float32)
    scale = np.float32(1.0 / 127.5)
    for i in range(b):
        chw = np.transpose(flows[i], (0, 3, 1, 2))  # (L, 2, H, W): x1, y1, x2, y2, ...
        if stacking == "grouped":
            chw = np.transpose(chw, (1, 0, 2, 3))  # (2, L, H, W): x1..xL, y1..yL
        view = out[i].reshape(chw.shape)
        np.subtract(chw, np.float32(127.5), out=view, dtype=np.float32)  # = flow.dequantize_flow, in place
        view *= scale
    return out


def build_input(spec: InputSpec, rgb: np.ndarray | None, flows: np.ndarray | None, *, mean, std,
                stacking: str) -> np.ndarray:
    """One network input for a batch of windows from the raw window data (see the module docstring)."""
    if spec.kind == "flow_stack":
        if flows is None or flows.shape[1] < spec.length:
            raise ValueError(f"flow_stack(L={spec.length}) needs {spec.length} flows per window")
        return stack_flow_batch(flows[:, flows.shape[1] - spec.length:], stacking)
    if rgb is None or rgb.shape[1] < spec.frames_back + 1:
        raise ValueError(f"{spec.describe()} needs {spec.frames_back + 1} frames per window")
    last = rgb.shape[1] - 1
    if spec.kind == "frame":
        return np.ascontiguousarray(np.transpose(_normalize(rgb[:, last], mean, std), (0, 3, 1, 2)))
    if spec.kind == "clip":
        picks = [last - (spec.length - 1 - k) * spec.step for k in range(spec.length)]
        x = _normalize(rgb[:, picks], mean, std)  # (B, T, S, S, 3)
        return np.ascontiguousarray(np.transpose(x, (0, 4, 1, 2, 3)))
    x = _normalize(rgb[:, last - spec.length:], mean, std)  # frame_stack: (B, L+1, S, S, 3)
    b, n, h, w, _ = x.shape
    return np.ascontiguousarray(np.transpose(x, (0, 1, 4, 2, 3))).reshape(b, 3 * n, h, w)


def build_inputs(specs: Sequence[InputSpec], rgb: np.ndarray | None, flows: np.ndarray | None, *, mean, std,
                 stacking: str) -> list[np.ndarray]:
    """Every input of one network, in its declared order."""
    return [build_input(s, rgb, flows, mean=mean, std=std, stacking=stacking) for s in specs]


def gather_windows(frames: np.ndarray, flows: np.ndarray | None, ends: Sequence[int],
                   needs: WindowNeeds) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Raw window data from a whole video: frames (N, S, S, 3) uint8, flows (N-1, S, S, 2) uint8 with flows[i-1]
    ending at frame i. Returns (rgb (B, F, ...), flows (B, Lf, ...)) for windows whose newest frame is each end."""
    for e in ends:
        if e < needs.span or e >= len(frames):
            raise ValueError(f"window ending at frame {e} needs frames {e - needs.span}..{e} of {len(frames)}")
    rgb = np.stack([frames[e - needs.frames + 1:e + 1] for e in ends]) if needs.frames else None
    fl = None
    if needs.flows:
        if flows is None:
            raise ValueError("these networks need flow, but no flow was computed")
        fl = np.stack([flows[e - needs.flows:e] for e in ends])
    return rgb, fl
