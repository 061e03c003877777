"""TSN segment sampling over extracted videos: K snippets per video, one per equal segment.

Spatial snippet: one RGB frame. Temporal snippet: the L flow fields ending at a frame, stacked
with stream.core.flow.stack_flows, i.e. exactly the runtime's input. Random draws use a generator
seeded from (seed, epoch, index), so a run reproduces whatever the worker count.
Camera-motion augmentation: when the extraction holds camera-moved flow variants
(`twostream extract --camera-motion K`), each training sample draws the clean flow or one of
the K variants (uniformly; all K snippets of a sample from the same one); validation uses clean flow.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from stream.core.flow import normalize_rgb, stack_flows
from train.datasets import VideoItem
from train.extract import load_flow_variants, load_video
from train.transforms import augment


def segment_indices(first: int, last: int, segments: int, rng: np.random.Generator | None) -> np.ndarray:
    """K indices in [first, last]: random within each of K equal segments (train) or segment centres (rng=None)."""
    span = last - first + 1
    if span <= 0:
        raise ValueError(f"empty index range [{first}, {last}]")
    edges = np.linspace(0, span, segments + 1)
    if rng is None:
        pos = (edges[:-1] + edges[1:]) / 2.0
    else:
        pos = edges[:-1] + rng.random(segments) * (edges[1:] - edges[:-1])
    return first + np.minimum(np.floor(pos).astype(int), span - 1)


class SegmentDataset(torch.utils.data.Dataset):
    """Yields (K, C, S, S) float32 snippets and the label of one video."""

    def __init__(self, extracted: str | Path, index: dict, items: list[VideoItem], *, stream: str, segments: int,
                 flow_length: int, train: bool, mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0),
                 seed: int = 0, cache: bool = False):
        if stream not in ("spatial", "temporal"):
            raise ValueError(f"stream must be spatial or temporal, got {stream!r}")
        self.root = Path(extracted)
        self.entries = []
        for it in items:
            entry = index["videos"].get(it.rel)
            if entry is None:
                raise KeyError(f"{it.rel} is not in {self.root}/extract.json (failed or not extracted)")
            self.entries.append(entry)
        self.labels = [it.label for it in items]
        self.stream, self.segments, self.flow_length, self.train = stream, segments, flow_length, train
        self.size = int(index["input_size"])
        self.stacking = index["flow"]["stacking"]
        self.mean, self.std, self.seed = mean, std, seed
        self.epoch = 0
        self.cache = {} if cache else None
        # Draw among camera-moved flow variants only when training the temporal stream on an extraction that has them.
        self.camera_motion = bool(train and stream == "temporal" and (index.get("camera_motion") or {}).get("variants"))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries)

    def _load(self, i: int) -> np.ndarray:
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        if self.camera_motion:
            data = load_flow_variants(self.root, self.entries[i])  # (1 + K, N-1, S, S, 2)
        else:
            frames, flows = load_video(self.root, self.entries[i], frames=self.stream == "spatial",
                                       flows=self.stream == "temporal")
            data = frames if self.stream == "spatial" else flows
        if self.cache is not None:
            self.cache[i] = data
        return data

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, self.epoch, i]) if self.train else None
        data = self._load(i)
        if self.camera_motion:
            # The draw comes first and from the sample's own generator: reproducible, and the same
            # segment/crop draws follow whichever variant was picked.
            data = data[rng.integers(len(data))]
        L = self.flow_length
        if self.stream == "spatial":
            idx = segment_indices(0, len(data) - 1, self.segments, rng)
            snippets = data[idx]  # (K, S, S, 3)
            if rng is not None:
                snippets = augment(snippets, is_flow=False, size=self.size, rng=rng)
            x = normalize_rgb(snippets, self.mean, self.std)
        else:
            # window ending at frame e uses flows[e-L:e]; e in [L, N-1] (stream.core.offline.window_ends)
            n_frames = len(data) + 1
            if n_frames - 1 < L:
                pad = np.repeat(data[-1:], L - len(data), axis=0)
                data = np.concatenate([data, pad])
                n_frames = len(data) + 1
            ends = segment_indices(L, n_frames - 1, self.segments, rng)
            groups = np.stack([data[e - L:e] for e in ends])  # (K, L, S, S, 2)
            if rng is not None:
                flat = groups.reshape(-1, *groups.shape[2:])
                flat = augment(flat, is_flow=True, size=self.size, rng=rng)
                groups = flat.reshape(groups.shape[0], L, self.size, self.size, 2)
            x = np.stack([stack_flows(g, self.stacking) for g in groups])
        return torch.from_numpy(np.ascontiguousarray(x)), self.labels[i]
