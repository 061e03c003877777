"""Camera-motion augmentation for the temporal stream: flow computed on frames moved by a simulated camera.

A network trained only on tripod video learns that "everything moves" is an action. Here each
training video also gets K *variants*: its source frames warped by a random smooth pan,
rotation and zoom plus a fast shake (train.sequences.camera_trajectory / handheld_frame, the
same simulator as `make-sequences --handheld`, with noise and JPEG off: only the camera moves),
then resized and turned into quantised flow by the runtime's own code (stream.core.offline.video_flows).
The variants are precomputed by `twostream extract --camera-motion K` (flow cannot be augmented
after the fact: a moved camera changes the flow algorithm's input, not just its output), stored
beside the clean flow as `flows_cm` (K, N-1, S, S, 2) uint8, and training draws the clean flow
or one variant per sample (train.segments). No torch here.
"""
from __future__ import annotations

import zlib
from dataclasses import asdict, replace

import numpy as np

from stream.core.errors import SourceError
from stream.core.flow import FlowSettings, resize_frame
from stream.core.offline import video_flows
from train.sequences import HandheldSettings, camera_trajectory, handheld_frame, read_clip

# Geometry of the dev-set handheld simulator; no sensor noise or compression (those are not camera motion).
CAMERA_MOTION = replace(HandheldSettings(), noise=0.0, jpeg_quality=100)


def variant_rng(seed: int, rel: str, variant: int) -> np.random.Generator:
    """Seeded per (seed, video, variant): the same trajectory whatever the worker order."""
    return np.random.default_rng([int(seed), zlib.crc32(rel.encode("utf-8")), int(variant)])


def moved_frames(frames_bgr: list[np.ndarray], fps: float, rng: np.random.Generator,
                 settings: HandheldSettings = CAMERA_MOTION) -> list[np.ndarray]:
    """The frames as a moving camera would have seen them (same count, same size, BGR)."""
    poses = camera_trajectory(len(frames_bgr), fps, settings, rng)
    return [handheld_frame(f, p, settings, rng) for f, p in zip(frames_bgr, poses, strict=True)]


def camera_motion_flows(source: str, rel: str, *, size: int, flow: FlowSettings, variants: int, seed: int,
                        max_frames: int = 0, expect_frames: int = 0,
                        settings: HandheldSettings = CAMERA_MOTION) -> np.ndarray:
    """(variants, N-1, size, size, 2) uint8 quantised flow of `variants` camera-moved copies of one video.

    Frames are moved at the source resolution (as a real camera would, before the runtime's resize),
    then resized with stream.core.flow.resize_frame and passed through stream.core.offline.video_flows.
    """
    frames, fps = read_clip(source)
    if max_frames:
        frames = frames[:max_frames]
    if expect_frames and len(frames) != expect_frames:
        raise SourceError(f"{source}: decoded {len(frames)} frames for camera motion but {expect_frames} before")
    out = []
    for v in range(variants):
        moved = moved_frames(frames, fps, variant_rng(seed, rel, v), settings)
        out.append(video_flows(np.stack([resize_frame(f, size) for f in moved]), flow))
    return np.stack(out)


def describe(variants: int, seed: int, settings: HandheldSettings = CAMERA_MOTION) -> dict:
    """What extract.json records about the augmentation (None-free, JSON-ready)."""
    return {"variants": int(variants), "seed": int(seed), "settings": asdict(settings)}
