"""Optical flow: the one implementation shared by the runtime and train/.

Flow is computed on grayscale frames already resized to the model's input size,
clipped to +-bound pixels and quantised to uint8 (as denseflow stores it). The
runtime quantises too, so a network sees exactly the values it was trained on.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from stream.core.errors import BundleError
from stream.core.resize import area_resize

BACKENDS = ("dis", "farneback", "tvl1")
DIS_PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}
STACKINGS = ("interleaved", "grouped")
SUBTRACTS = ("none", "mean", "median")


@dataclass(frozen=True)
class FlowSettings:
    """How flow is made and scaled; stored in bundle.toml [flow] and in extracted datasets."""

    backend: str = "dis"
    preset: str = "fast"  # DIS preset; ignored by the other backends
    bound: float = 20.0  # clip to +-bound pixels before quantising
    stacking: str = "interleaved"  # interleaved: x1,y1,x2,y2,... ; grouped: x1..xL,y1..yL
    # Camera-motion compensation (two-stream paper, sec. 3.1): subtract each field's mean or median
    # vector before quantising, so a global pan/shake moves no flow value; "none" keeps raw flow.
    subtract: str = "none"
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def validate(self, where: str = "flow") -> "FlowSettings":
        if self.backend not in BACKENDS:
            raise BundleError(f"{where}.backend = {self.backend!r}: expected one of {', '.join(BACKENDS)}")
        if self.backend == "dis" and self.preset not in DIS_PRESETS:
            raise BundleError(f"{where}.preset = {self.preset!r}: expected one of {', '.join(DIS_PRESETS)}")
        if not (0.0 < float(self.bound) <= 1000.0):
            raise BundleError(f"{where}.bound = {self.bound!r}: expected a number in (0, 1000]")
        if self.stacking not in STACKINGS:
            raise BundleError(f"{where}.stacking = {self.stacking!r}: expected one of {', '.join(STACKINGS)}")
        if self.subtract not in SUBTRACTS:
            raise BundleError(f"{where}.subtract = {self.subtract!r}: expected one of {', '.join(SUBTRACTS)}")
        if self.backend == "tvl1" and not hasattr(cv2, "optflow"):
            raise BundleError(f"{where}.backend = 'tvl1' needs opencv-contrib-python (cv2.optflow is missing)")
        return self

    def as_dict(self) -> dict:
        d = {"backend": self.backend, "preset": self.preset, "bound": float(self.bound), "stacking": self.stacking}
        # Only when set: extractions and checkpoints made before `subtract` existed store the same dict,
        # so comparing them with today's default settings still says "same flow".
        if self.subtract != "none":
            d["subtract"] = self.subtract
        return d


class FlowComputer:
    """Computes flow between consecutive grayscale frames with one OpenCV algorithm instance."""

    def __init__(self, settings: FlowSettings):
        self.settings = settings.validate()
        self._algo = _make_algorithm(settings)

    def __call__(self, prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
        """Return float32 flow (H, W, 2) in pixels, x then y (camera motion removed if settings.subtract says so)."""
        if self.settings.backend == "farneback":
            flow = cv2.calcOpticalFlowFarneback(prev_gray, next_gray, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        else:
            flow = self._algo.calc(prev_gray, next_gray, None)
        return subtract_camera_motion(flow, self.settings.subtract)


def _make_algorithm(settings: FlowSettings):
    if settings.backend == "dis":
        return cv2.DISOpticalFlow_create(DIS_PRESETS[settings.preset])
    if settings.backend == "tvl1":
        return cv2.optflow.DualTVL1OpticalFlow_create()
    return None


def subtract_camera_motion(flow: np.ndarray, how: str) -> np.ndarray:
    """Remove the field's global motion: subtract its mean or median (x and y separately); "none": unchanged.

    A pan or shake moves every pixel by about the same vector; the median is that vector even
    when a person fills a large part of the view, the mean is cheaper but is pulled by the person.
    Rotation and zoom are not uniform and stay. Used by every flow computer (CPU, CUDA).
    """
    if how == "none" or flow is None:
        return flow
    if how == "median":
        centre = _median_xy(flow)
    elif how == "mean":
        centre = np.asarray(cv2.mean(flow)[:2])  # ~0.03 ms at 112x112 (numpy: ~0.5 ms)
    else:
        raise ValueError(f"unknown flow subtraction {how!r}: expected one of {', '.join(SUBTRACTS)}")
    if flow.dtype == np.float32 and flow.ndim == 3 and flow.shape[2] == 2:
        # cv2's per-channel scalar subtraction: the same float32 differences as numpy's broadcast, which runs
        # an inner loop of length 2 (0.066 vs 0.007 ms per 112x112 field)
        return cv2.subtract(flow, (float(centre[0]), float(centre[1]), 0.0, 0.0))
    return (flow - centre.astype(np.float32)).astype(np.float32, copy=False)


def _median_xy(flow: np.ndarray) -> np.ndarray:
    """Exact median of the x and of the y components (float32 (2,)), as np.median gives it, by one partition
    per component (np.median over a channel-major copy measured 0.148 ms at 112x112, this 0.122)."""
    n = flow.shape[0] * flow.shape[1]
    k = n // 2
    centre = np.empty(2, dtype=np.float32)
    for ch in range(2):
        values = np.ascontiguousarray(flow[..., ch]).ravel()
        if n % 2:
            centre[ch] = np.partition(values, k)[k]
        else:
            part = np.partition(values, (k - 1, k))
            centre[ch] = (part[k - 1] + part[k]) * 0.5
    return centre


def quantize_flow(flow: np.ndarray, bound: float) -> np.ndarray:
    """Clip flow to +-bound and map it linearly onto 0..255 (uint8, same shape)."""
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2.0 * bound))
    return np.rint(scaled).astype(np.uint8)


def dequantize_flow(q: np.ndarray) -> np.ndarray:
    """Map quantised flow back to the network's input range [-1, 1] (float32).

    128 is not exactly zero motion after quantisation (0 maps to 127.5); the network
    learns on the same values, so training and deployment agree exactly.
    """
    return (q.astype(np.float32) - 127.5) * (1.0 / 127.5)


def stack_flows(quantized: list[np.ndarray] | np.ndarray, stacking: str) -> np.ndarray:
    """Stack L quantised flow fields (each H, W, 2, oldest first) into a (2L, H, W) float32 input."""
    q = np.asarray(quantized)  # (L, H, W, 2)
    if q.ndim != 4 or q.shape[-1] != 2:
        raise ValueError(f"expected flows shaped (L, H, W, 2), got {q.shape}")
    chw = np.transpose(q, (0, 3, 1, 2))  # (L, 2, H, W)
    if stacking == "grouped":
        chw = np.transpose(chw, (1, 0, 2, 3))  # (2, L, H, W)
    elif stacking != "interleaved":
        raise ValueError(f"unknown stacking {stacking!r}")
    return dequantize_flow(chw.reshape(-1, q.shape[1], q.shape[2]))


def to_gray(frame_rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY)


def resize_frame(frame_bgr: np.ndarray, size: int) -> np.ndarray:
    """Decoder BGR frame of any size -> RGB size x size (squashed: cameras keep their whole view), area-averaged
    (cv2.INTER_AREA's result, computed faster: stream.core.resize)."""
    return cv2.cvtColor(area_resize(frame_bgr, size), cv2.COLOR_BGR2RGB)


def normalize_rgb(frames: np.ndarray, mean, std) -> np.ndarray:
    """(B, H, W, 3) uint8 RGB -> (B, 3, H, W) float32 normalised with per-channel mean/std in pixel units."""
    x = frames.astype(np.float32)
    x -= np.asarray(mean, dtype=np.float32)
    x *= 1.0 / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))
