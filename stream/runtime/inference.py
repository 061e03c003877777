"""Inference stage: one process. Collects the windows that are ready (from every source), runs ONE
spatial and ONE temporal engine call per batch, fuses, and hands results to the supervisor.

Live sources keep only their newest pending window (older ones are counted as
windows_dropped) so predictions stay current; files in fast pace lose nothing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from engines.base import EngineUnavailable
from engines.loader import open_bundle
from stream.core.config import EngineSettings, FusionSettings
from stream.core.flow import normalize_rgb, stack_flows
from stream.core.fusion import fuse_scores
from stream.runtime.events import WindowReady, WindowResult
from stream.runtime.outage import OutageGuard
from stream.runtime.shm import RingLayout, ShmRing, SlotOverwritten, StatsBoard
from stream.runtime.stage import StageLink, stage_runtime


@dataclass(frozen=True)
class InferenceJob:
    model: str  # the bundle directory, as resolved by the supervisor
    engine: EngineSettings
    fusion: FusionSettings  # the stream weights (-1: the bundle's)
    flow_rings: tuple[RingLayout, ...]
    live: tuple[bool, ...]
    stats_name: str
    max_batch: int
    in_endpoint: str  # PULL, bound here
    out_endpoint: str  # PUSH to the supervisor


class _Batcher:
    """Reads a window's inputs from the flow ring straight into preallocated batch arrays."""

    def __init__(self, job: InferenceJob, size: int, flow_length: int):
        self.L = flow_length
        self.rings = [ShmRing(layout, create=False) for layout in job.flow_rings]
        self.rgb = np.empty((job.max_batch, size, size, 3), dtype=np.uint8)
        self.flows = np.empty((job.max_batch, flow_length, size, size, 2), dtype=np.uint8)

    def load(self, slot: int, win: WindowReady) -> bool:
        ring = self.rings[win.source]
        try:
            ring.read(win.end_index, "frame_rgb", out=self.rgb[slot])
            for k in range(self.L):
                ring.read(win.end_index - self.L + 1 + k, "flow", out=self.flows[slot, k])
        except SlotOverwritten:
            return False
        return True

    def release(self, win: WindowReady) -> None:
        """Tell the flow stage which slots the next window of this source can still need."""
        ring = self.rings[win.source]
        ring.set_consumed(max(ring.consumed, win.end_index - self.L + 2))


def inference_main(job: InferenceJob, stop, link: StageLink | None = None) -> None:
    with stage_runtime(link, stats=(job.stats_name, len(job.flow_rings))) as runtime:
        # verify_remote=False: a stage restarted during a Triton outage must start (the supervisor verified at start)
        loaded = open_bundle(job.model, kind=job.engine.kind, threads=job.engine.threads, options=job.engine,
                             verify_remote=False)
        for engine in (loaded.spatial, loaded.temporal):  # the first run allocates: pay it before sources start
            try:
                engine.run(np.zeros((1, *engine.input_shape), dtype=engine.input_dtype))
            except EngineUnavailable:  # a remote engine that is down now: OutageGuard handles it per batch
                pass
        # bound only now: the supervisor lets sources start once this socket exists (models loaded)
        pull, push = runtime.pull(job.in_endpoint), runtime.push(job.out_endpoint)
        stage = InferenceStage(job, loaded, runtime.stats, push)
        while runtime.running(stop):
            if not pull.poll(100):
                continue
            pending = [pull.recv_pyobj()]
            while len(pending) < 4 * job.max_batch and pull.poll(0):
                pending.append(pull.recv_pyobj())
            windows: list[WindowReady] = []
            for msg in pending:
                if isinstance(msg, WindowReady):
                    windows.append(msg)
                    continue
                # an end marker: everything before it for that source must be published first
                stage.run(windows)
                windows = []
                push.send_pyobj(msg)
            stage.run(windows)


class InferenceStage:
    def __init__(self, job: InferenceJob, loaded, stats: StatsBoard, push):
        self.job = job
        self.bundle = loaded.bundle
        self.spatial = loaded.spatial
        self.temporal = loaded.temporal
        fusion = job.fusion
        self.ws = fusion.spatial_weight if fusion.spatial_weight >= 0 else self.bundle.fusion_weights["spatial"]
        self.wt = fusion.temporal_weight if fusion.temporal_weight >= 0 else self.bundle.fusion_weights["temporal"]
        self.stats = stats
        self.push = push
        self.batcher = _Batcher(job, self.bundle.input_size, self.bundle.flow_length)
        self.outage = OutageGuard(stats, len(job.flow_rings), file_wait=job.engine.outage_file_wait,
                                  backoff_max=job.engine.outage_backoff_max)

    def _keep_latest_live(self, windows: list[WindowReady]) -> list[WindowReady]:
        newest = {w.source: i for i, w in enumerate(windows)}
        kept = []
        for i, w in enumerate(windows):
            if self.job.live[w.source] and newest[w.source] != i:
                self.stats.add(w.source, "windows_dropped")
                self.batcher.release(w)
            else:
                kept.append(w)
        return kept

    def run(self, windows: list[WindowReady]) -> None:
        windows = self._keep_latest_live(windows)
        bundle = self.bundle
        for start in range(0, len(windows), self.job.max_batch):
            chunk = windows[start:start + self.job.max_batch]
            t0 = time.time()
            ready = []
            for w in chunk:
                if self.batcher.load(len(ready), w):
                    ready.append(w)
                else:
                    self.stats.add(w.source, "windows_dropped")
                self.batcher.release(w)
            if not ready:
                continue
            n = len(ready)
            spatial_in = normalize_rgb(self.batcher.rgb[:n], bundle.mean, bundle.std)
            temporal_in = np.stack([stack_flows(self.batcher.flows[i], bundle.flow.stacking) for i in range(n)])
            scores = self.outage.run(lambda: (self.spatial.run(spatial_in), self.temporal.run(temporal_in)),
                                     wait=not all(self.job.live[w.source] for w in ready))
            if scores is None:  # engine unavailable (remote): these windows are dropped and counted
                for w in ready:
                    self.stats.add(w.source, "windows_dropped")
                continue
            ps, pt, pf = fuse_scores(*scores, spatial_weight=self.ws, temporal_weight=self.wt)
            t1 = time.time()
            for i, w in enumerate(ready):
                self.push.send_pyobj(WindowResult(
                    source=w.source, frame=w.frame, t_capture=w.t_capture, t_flow=w.t_flow, t_infer_start=t0,
                    t_infer_end=t1, spatial=ps[i].tolist(), temporal=pt[i].tolist(), fused=pf[i].tolist(), batch=n,
                    gap_frames=w.gap_frames, gap_seconds=w.gap_seconds))
