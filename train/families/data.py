"""Training windows of every input kind from a `twostream extract` folder, TSN-style (K segments per video).

A sample is K windows of one video, each ending at a frame e drawn in one of K equal segments
(train) or at the segments' centres (validation); per window and input kind:
  frame        (3, S, S)          frame e
  flow_stack   (2L, S, S)         flows e-L .. e-1 stacked exactly as stream.core.flow.stack_flows
  clip         (3, T, S, S)       frames e-(T-1)s, ..., e-s, e
  frame_stack  (3(L+1), S, S)     frames e-L .. e, oldest first, channels concatenated
all normalised exactly as the runtime does (normalize_rgb, dequantised flow). Augmentation (train):
one TSN corner crop + scale jitter and one horizontal flip per sample, shared by every frame and
flow field of it so the kinds stay aligned (flow flips negate x). Draws are seeded per (seed, epoch,
index). Frames before the first one repeat the first frame (short videos).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from stream.core.flow import normalize_rgb, stack_flows
from train.datasets import VideoItem
from train.extract import load_video
from train.segments import segment_indices
from train.transforms import crop_resize, flip_flow, flip_frames, sample_crop

KINDS = ("frame", "flow_stack", "clip", "frame_stack")


def history(kinds, *, flow_length: int = 10, clip_length: int = 8, clip_stride: int = 1, stack_length: int = 10) -> int:
    """Frames a window needs (the newest included) to build every kind in `kinds`."""
    need = {"frame": 1, "flow_stack": flow_length + 1, "clip": (clip_length - 1) * clip_stride + 1,
            "frame_stack": stack_length + 1}
    unknown = [k for k in kinds if k not in need]
    if unknown:
        raise ValueError(f"unknown input kind(s) {unknown}: expected {', '.join(KINDS)}")
    return max(need[k] for k in kinds)


def window_arrays(frames: np.ndarray, flows: np.ndarray | None, e: int, kinds, *, mean, std, stacking: str,
                  flow_length: int = 10, clip_length: int = 8, clip_stride: int = 1, stack_length: int = 10) -> dict:
    """Inputs of one window ending at frame e (uint8 frames (N, S, S, 3), flows (N-1, S, S, 2)) as float32 arrays."""
    out = {}
    idx = lambda ids: np.clip(np.asarray(ids), 0, len(frames) - 1)  # noqa: E731
    for kind in kinds:
        if kind == "frame":
            out[kind] = normalize_rgb(frames[e:e + 1], mean, std)[0]
        elif kind == "flow_stack":
            ids = np.clip(np.arange(e - flow_length, e), 0, len(flows) - 1)
            out[kind] = stack_flows(flows[ids], stacking)
        elif kind == "clip":
            ids = idx([e - (clip_length - 1 - i) * clip_stride for i in range(clip_length)])
            out[kind] = np.ascontiguousarray(normalize_rgb(frames[ids], mean, std).transpose(1, 0, 2, 3))
        elif kind == "frame_stack":
            ids = idx(range(e - stack_length, e + 1))
            x = normalize_rgb(frames[ids], mean, std)  # (L+1, 3, S, S)
            out[kind] = x.reshape(-1, *x.shape[2:])
        else:
            raise ValueError(f"unknown input kind {kind!r}")
    return out


class WindowDataset(torch.utils.data.Dataset):
    """Yields ({kind: (K, ...) float32 tensor}, label) per video."""

    def __init__(self, extracted: str | Path, index: dict, items: list[VideoItem], kinds, *, segments: int, train: bool,
                 mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0), seed: int = 0, flow_length: int = 10,
                 clip_length: int = 8, clip_stride: int = 1, stack_length: int = 10):
        self.root = Path(extracted)
        self.entries = [index["videos"][it.rel] for it in items]
        self.labels = [it.label for it in items]
        self.kinds, self.segments, self.train = tuple(kinds), segments, train
        self.size = int(index["input_size"])
        self.stacking = index["flow"]["stacking"]
        self.mean, self.std, self.seed, self.epoch = mean, std, seed, 0
        self.params = dict(flow_length=flow_length, clip_length=clip_length, clip_stride=clip_stride,
                           stack_length=stack_length)
        self.need = history(self.kinds, **self.params)
        self.cache: dict[int, tuple] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries)

    def _load(self, i: int):
        if i not in self.cache:
            self.cache[i] = load_video(self.root, self.entries[i], frames=True, flows="flow_stack" in self.kinds)
        return self.cache[i]

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, self.epoch, i]) if self.train else None
        frames, flows = self._load(i)
        first = min(self.need - 1, len(frames) - 1)
        ends = segment_indices(first, len(frames) - 1, self.segments, rng)
        if rng is not None:  # one crop and flip for the whole sample
            box = sample_crop(frames.shape[1], frames.shape[2], rng)
            flip = rng.random() < 0.5
            frames = crop_resize(frames, box, self.size)
            frames = flip_frames(frames) if flip else frames
            if flows is not None:
                flows = crop_resize(flows, box, self.size)
                flows = flip_flow(flows) if flip else flows
        per = [window_arrays(frames, flows, int(e), self.kinds, mean=self.mean, std=self.std, stacking=self.stacking,
                             **self.params) for e in ends]
        return {k: torch.from_numpy(np.stack([p[k] for p in per])) for k in self.kinds}, self.labels[i]
