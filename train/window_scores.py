"""Fused scores of the windows a run would publish, computed offline through the bundle's engines.

Shared by `twostream fit` (choosing the "none" threshold) and `twostream eval` (false alarms on
background videos), so both score exactly the windows the runtime publishes at a given stride.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def stride_ends(num_frames: int, span: int, stride: int) -> list[int]:
    """Newest frames of the windows the runtime publishes for a file of num_frames (fast pace)."""
    return list(range(span, num_frames, stride))


def stride_scores(loaded, frames, flows, stride: int, batch: int = 32) -> np.ndarray:
    """(windows, classes) fused probabilities of every window the runtime would publish (fast pace, one every
    `stride` frames once the first is complete), through the bundle's engines and its [fusion]."""
    from stream.core.fusion import fuse_networks
    from stream.core.offline import bundle_window_inputs

    b = loaded.bundle
    ends = stride_ends(len(frames), b.span, stride)
    out = []
    for i in range(0, len(ends), batch):
        inputs = bundle_window_inputs(b, frames, flows, ends[i:i + batch])
        logits = {name: engine.run(*inputs[name]) for name, engine in loaded.engines.items()}
        _, fused = fuse_networks(logits, method=b.fusion.method, weights=b.fusion.weights, network=b.fusion.network)
        out.append(fused)
    return np.concatenate(out) if out else np.zeros((0, b.num_classes))


def video_fps(video: str | Path) -> float:
    """The file's frame rate, 25 when OpenCV reports none or a value outside 1..240."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return fps if fps and 1.0 <= fps <= 240.0 else 25.0
