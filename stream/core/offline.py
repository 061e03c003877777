"""Whole-video helpers built on stream.core.flow: decode, flow, and window inputs exactly as the runtime makes them.

Used by evaluation, extraction, INT8 calibration and benchmarks, so every offline
number is computed on the inputs a camera produces. Window inputs of every kind come from
stream.core.inputs, the builder the inference stage uses too.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stream.core.errors import SourceError
from stream.core.flow import FlowComputer, FlowSettings, quantize_flow, resize_frame, to_gray
from stream.core.inputs import InputSpec, build_inputs, gather_windows, window_needs


def open_video(path: str | Path) -> cv2.VideoCapture:
    """Open a video file for decoding, or raise SourceError naming it."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SourceError(f"{path}: cannot be opened as a video")
    return cap


def iter_frames(cap: cv2.VideoCapture, max_frames: int = 0):
    """Yield decoded BGR frames until the end (or `max_frames`), then release the capture."""
    try:
        n = 0
        while not max_frames or n < max_frames:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            n += 1
            yield frame
    finally:
        cap.release()


def read_video(path: str | Path, size: int, max_frames: int = 0) -> np.ndarray:
    """Decode a video into (N, size, size, 3) uint8 RGB frames (squashed, as the runtime does)."""
    frames = [resize_frame(f, size) for f in iter_frames(open_video(path), max_frames)]
    if not frames:
        raise SourceError(f"{path}: no frame could be decoded")
    return np.stack(frames)


def video_flows(frames: np.ndarray, settings: FlowSettings) -> np.ndarray:
    """Quantised flow between consecutive frames: (N-1, H, W, 2) uint8; flow i-1 ends at frame i."""
    compute = FlowComputer(settings)
    gray = [to_gray(f) for f in frames]
    out = np.empty((len(frames) - 1, frames.shape[1], frames.shape[2], 2), dtype=np.uint8)
    for i in range(1, len(frames)):
        out[i - 1] = quantize_flow(compute(gray[i - 1], gray[i]), settings.bound)
    return out


def window_ends(num_frames: int, span: int, count: int) -> list[int]:
    """`count` evenly spaced newest-frame indices of full windows (TSN-style test sampling); `span` is how many
    frames a window needs before its newest (today's two-stream bundles: the flow length L)."""
    first, last = span, num_frames - 1
    if last < first:
        return []
    if count <= 1:
        return [(first + last) // 2]
    return sorted(set(int(round(x)) for x in np.linspace(first, last, count)))


def window_inputs(frames: np.ndarray, flows: np.ndarray, ends: list[int], *, flow_length: int, mean, std,
                  stacking: str) -> tuple[np.ndarray, np.ndarray]:
    """Spatial (B,3,S,S) and temporal (B,2L,S,S) inputs of a two-stream bundle for windows ending at `ends`."""
    specs = (InputSpec("frame"), InputSpec("flow_stack", flow_length))
    rgb, fl = gather_windows(frames, flows, ends, window_needs(specs))
    spatial, temporal = build_inputs(specs, rgb, fl, mean=mean, std=std, stacking=stacking)
    return spatial, temporal


def bundle_window_inputs(bundle, frames: np.ndarray, flows: np.ndarray | None,
                         ends: list[int]) -> dict[str, list[np.ndarray]]:
    """Every network's inputs, {name: [input, ...]}, for windows ending at `ends` (any bundle family).

    `bundle` is an engines.bundle.Bundle (networks, needs, mean, std, flow); flows may be None when no
    network takes a flow_stack (see video_flows_if_needed)."""
    rgb, fl = gather_windows(frames, flows, ends, bundle.needs)
    return {net.name: build_inputs(net.inputs, rgb, fl, mean=bundle.mean, std=bundle.std,
                                   stacking=bundle.flow.stacking) for net in bundle.networks}


def video_flows_if_needed(bundle, frames: np.ndarray) -> np.ndarray | None:
    """video_flows with the bundle's [flow] settings, or None when no network of the bundle takes flow."""
    return video_flows(frames, bundle.flow) if bundle.needs.flows else None
