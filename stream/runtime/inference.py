"""Inference stage: one process per share of the sources ([pipeline] inference_processes; usually one for
all). Collects the windows that are ready (from the sources it serves), runs ONE
engine call per network of the bundle per batch (two-stream: spatial and temporal), fuses as the
bundle's [fusion] says, and hands results to the supervisor. Window inputs of every kind are built by
stream.core.inputs from the frames and flows read out of the flow ring.

Live sources keep only their newest pending window (older ones are counted as
windows_dropped) so predictions stay current; files in fast pace lose nothing.
"""
from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass

import numpy as np

from engines.base import EngineUnavailable
from engines.loader import open_bundle
from stream.core.config import EngineSettings, FusionSettings
from stream.core.fusion import fuse_networks
from stream.core.inputs import build_inputs
from stream.runtime.events import WindowReady, WindowResult
from stream.runtime.outage import OutageGuard
from stream.runtime.shm import RingLayout, ShmRing, SlotOverwritten, StatsBoard
from stream.runtime.stage import StageLink, stage_runtime

log = logging.getLogger("twostream")


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
    max_batch_ms: float = 0.0  # [pipeline] max_batch_ms: cap batches by the networks' timed cost (0: off)
    ms_per_window: float = 0.0  # that cost, when the supervisor has timed it already (0: time it here)


def batch_limit(ms_per_window: float, *, max_batch: int, max_batch_ms: float) -> int:
    """Windows per engine call: max_batch, or fewer so one call takes about max_batch_ms (never below 1)."""
    if max_batch_ms <= 0 or ms_per_window <= 0:
        return max_batch
    return max(1, min(max_batch, int(max_batch_ms // ms_per_window)))


def time_one_window(engines, repeats: int = 3) -> float:
    """Fastest of `repeats` runs of every network on one all-zero window, in ms (0.0 if an engine is down)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        try:
            for engine in engines.values():
                engine.run(*(np.zeros((1, *shape), dtype=dtype)
                             for shape, dtype in zip(engine.input_shapes, engine.input_dtypes, strict=True)))
        except EngineUnavailable:
            return 0.0
        best = min(best, time.perf_counter() - t0)
    return best * 1000.0


class _Batcher:
    """Reads a window's raw data from the flow ring straight into preallocated batch arrays: the newest
    `needs.frames` RGB frames and `needs.flows` flow fields (one ring slot per frame, oldest first)."""

    def __init__(self, job: InferenceJob, size: int, needs):
        self.F, self.L = needs.frames, needs.flows
        self.slots = needs.slots  # slots one window reads, ending at its newest frame's slot
        self.rings = [ShmRing(layout, create=False) for layout in job.flow_rings]
        self.rgb = np.empty((job.max_batch, self.F, size, size, 3), dtype=np.uint8) if self.F else None
        self.flows = np.empty((job.max_batch, self.L, size, size, 2), dtype=np.uint8) if self.L else None

    def load(self, slot: int, win: WindowReady) -> bool:
        ring, end = self.rings[win.source], win.end_index
        try:
            for k in range(self.F):
                ring.read(end - self.F + 1 + k, "frame_rgb", out=self.rgb[slot, k])
            for k in range(self.L):
                ring.read(end - self.L + 1 + k, "flow", out=self.flows[slot, k])
        except SlotOverwritten:
            return False
        return True

    def release(self, win: WindowReady) -> None:
        """Tell the flow stage which slots the next window of this source can still need."""
        ring = self.rings[win.source]
        ring.set_consumed(max(ring.consumed, win.end_index + 2 - self.slots))


def inference_main(job: InferenceJob, stop, link: StageLink | None = None) -> None:
    with stage_runtime(link, stats=(job.stats_name, len(job.flow_rings))) as runtime:
        # verify_remote=False: a stage restarted during a Triton outage must start (the supervisor verified at start)
        loaded = open_bundle(job.model, kind=job.engine.kind, threads=job.engine.threads, options=job.engine,
                             verify_remote=False)
        for engine in loaded.engines.values():  # the first run allocates: pay it before sources start
            try:
                engine.run(*(np.zeros((1, *shape), dtype=dtype)
                             for shape, dtype in zip(engine.input_shapes, engine.input_dtypes, strict=True)))
            except EngineUnavailable:  # a remote engine that is down now: OutageGuard handles it per batch
                pass
        limit = job.max_batch
        if job.max_batch_ms > 0:
            cost = job.ms_per_window or time_one_window(loaded.engines)
            limit = batch_limit(cost, max_batch=job.max_batch, max_batch_ms=job.max_batch_ms)
            log.debug("inference: %.1f ms per window; batches of at most %d windows ([pipeline] max_batch_ms = %g)",
                      cost, limit, job.max_batch_ms)
        # bound only now: the supervisor lets sources start once this socket exists (models loaded)
        pull, push = runtime.pull(job.in_endpoint), runtime.push(job.out_endpoint)
        stage = InferenceStage(job, loaded, runtime.stats, push, batch=limit)
        runtime.settle()
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
    def __init__(self, job: InferenceJob, loaded, stats: StatsBoard, push, batch: int | None = None):
        self.job = job
        self.batch = batch or job.max_batch  # windows per engine call (<= max_batch)
        self.bundle = loaded.bundle
        self.engines = loaded.engines
        self.networks = self.bundle.networks
        self.fusion = self.bundle.fusion
        # [fusion] spatial_weight / temporal_weight (>= 0) override the bundle's weight of those networks
        overrides = {"spatial": job.fusion.spatial_weight, "temporal": job.fusion.temporal_weight}
        self.weights = {name: overrides[name] if overrides.get(name, -1) >= 0 else w
                        for name, w in self.fusion.weights.items()}
        self.two_stream = [n.name for n in self.networks] == ["spatial", "temporal"]
        self.stats = stats
        self.push = push
        self.batcher = _Batcher(job, self.bundle.input_size, self.bundle.needs)
        self.outage = OutageGuard(stats, len(job.flow_rings), file_wait=job.engine.outage_file_wait,
                                  backoff_max=job.engine.outage_backoff_max)

    def _run_engines(self, inputs: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
        return {name: engine.run(*inputs[name]) for name, engine in self.engines.items()}

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
        for start in range(0, len(windows), self.batch):
            chunk = windows[start:start + self.batch]
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
            rgb = None if self.batcher.rgb is None else self.batcher.rgb[:n]
            flows = None if self.batcher.flows is None else self.batcher.flows[:n]
            inputs = {net.name: build_inputs(net.inputs, rgb, flows, mean=bundle.mean, std=bundle.std,
                                             stacking=bundle.flow.stacking) for net in self.networks}
            logits = self.outage.run(functools.partial(self._run_engines, inputs),
                                     wait=not all(self.job.live[w.source] for w in ready))
            if logits is None:  # engine unavailable (remote): these windows are dropped and counted
                for w in ready:
                    self.stats.add(w.source, "windows_dropped")
                continue
            probs, pf = fuse_networks(logits, method=self.fusion.method, weights=self.weights,
                                      network=self.fusion.network)
            t1 = time.time()
            for i, w in enumerate(ready):
                if self.two_stream:  # the two-stream result, as before
                    per_net = dict(spatial=probs["spatial"][i].tolist(), temporal=probs["temporal"][i].tolist())
                else:
                    per_net = dict(spatial=[], temporal=[], streams={k: p[i].tolist() for k, p in probs.items()})
                self.push.send_pyobj(WindowResult(
                    source=w.source, frame=w.frame, t_capture=w.t_capture, t_flow=w.t_flow, t_infer_start=t0,
                    t_infer_end=t1, fused=pf[i].tolist(), batch=n, gap_frames=w.gap_frames,
                    gap_seconds=w.gap_seconds, **per_net))
