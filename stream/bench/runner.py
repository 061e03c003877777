"""Run the real pipeline (stream.runtime.supervisor.Pipeline, this process as supervisor) on N copies of a video
while a stream.clients.client.Subscriber on a free loopback port records every published message and a
sampler thread records the CPU time of every stage process from /proc (every `sample_every` s: a sample reads
~200 /proc files with 32 sources, so capacity runs sample every 0.5 s to leave the CPU to the pipeline)."""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field, replace

from stream.bench.common import BenchContext, CpuSampler, machine_cpu_seconds
from stream.core.ports import free_port


@dataclass
class PipelineRun:
    sources: int
    pace: str
    wall_s: float  # Pipeline.run() from start to return (process start-up and shut-down included)
    predictions: list = field(default_factory=list)  # (receive time, Prediction)
    eos: dict = field(default_factory=dict)  # source -> EndOfStream raw payload
    status: dict = field(default_factory=dict)  # source -> last status payload
    status_log: list = field(default_factory=list)  # (receive time, status payload), every one
    lost: int = 0  # predictions missed by the subscriber (seq gaps)
    malformed: int = 0
    cpu_by_stage: dict = field(default_factory=dict)  # stage -> CPU seconds
    supervisor_cpu_s: float = 0.0
    machine_busy_s: float = 0.0  # whole-machine busy CPU seconds during the run (includes other users)
    errors: list = field(default_factory=list)
    cpu_series: list = field(default_factory=list)  # (time, CPU s of this pipeline so far, machine busy CPU s)
    stage_series: list = field(default_factory=list)  # (time, {stage: CPU s so far}, this process's CPU s so far)

    def steady_window(self) -> tuple[float, float]:
        """(first, last) publication time over all sources: the interval steady_fps() counts."""
        if not self.predictions:
            return 0.0, 0.0
        return self.predictions[0][0], self.predictions[-1][0]

    def steady_cpu_ms_per_frame(self, frames_per_s: float, lo: float = 0.25, hi: float = 0.75) -> dict:
        """CPU ms per frame of each stage in the middle of the publishing interval (from `lo` to `hi` of it, so
        start-up, model loading and the drain are left out), at `frames_per_s` frames entering the pipeline
        (realtime sources: sources x fps). `supervisor` is this process: the supervisor and the bench's own
        subscriber. {} when fewer than two samples fall in that interval."""
        first, last = self.steady_window()
        t0, t1 = first + lo * (last - first), first + hi * (last - first)
        inside = [x for x in self.stage_series if t0 <= x[0] <= t1]
        if len(inside) < 2 or frames_per_s <= 0:
            return {}
        (ta, a, own_a), (tb, b, own_b) = inside[0], inside[-1]
        per = 1000.0 / ((tb - ta) * frames_per_s)
        out = {k: (v - a.get(k, 0.0)) * per for k, v in b.items()}
        out["supervisor"] = (own_b - own_a) * per
        out["total"] = sum(out.values())
        out["seconds"] = tb - ta
        return out

    def others_cores(self, t0: float, t1: float) -> tuple[float, bool]:
        """Cores used by processes outside this pipeline between t0 and t1 (from the 0.1 s CPU samples);
        (value, True) when at least two samples fall in the interval, else over the whole run (False)."""
        inside = [x for x in self.cpu_series if t0 <= x[0] <= t1]
        if len(inside) >= 2:
            (ta, oa, ba), (tb, ob, bb) = inside[0], inside[-1]
            return max(0.0, (bb - ba) - (ob - oa)) / (tb - ta), True
        ours = sum(self.cpu_by_stage.values()) + self.supervisor_cpu_s
        return max(0.0, self.machine_busy_s - ours) / max(1e-9, self.wall_s), False

    @property
    def frames(self) -> int:
        """Frames per the end-of-stream messages; for a source whose EOS never came, its last published frame + 1."""
        total = sum(int(e.get("frames", 0)) for e in self.eos.values())
        last: dict[str, int] = {}
        for _, p in self.predictions:
            if p.source not in self.eos:
                last[p.source] = p.frame + 1
        return total + sum(last.values())

    def steady_fps(self) -> tuple[float, int, float]:
        """(frames/s, frames, seconds) between each source's first and last prediction.

        Frames are counted by frame number between a source's first and last published window, summed
        over sources; the time is from the earliest first publication to the latest last one. This
        leaves out process start-up/model loading and the drain, which are reported separately.
        """
        first, last = {}, {}
        for t, p in self.predictions:
            first.setdefault(p.source, (t, p.frame))
            last[p.source] = (t, p.frame)
        if not first:
            return 0.0, 0, 0.0
        frames = sum(last[s][1] - first[s][1] for s in first)
        seconds = max(v[0] for v in last.values()) - min(v[0] for v in first.values())
        return (frames / seconds if seconds > 0 else 0.0), frames, seconds


def run_pipeline(ctx: BenchContext, *, video, sources: int, pace: str, max_frames: int = 0, threads: int | None = None,
                 max_batch: int | None = None, timeout: float = 300.0, preview: bool = False,
                 engine: dict | None = None, sample_every: float = 0.1) -> PipelineRun:
    from stream.clients.client import EndOfStream, Prediction, Status, Subscriber
    from stream.core.config import Settings
    from stream.runtime.sources import parse_sources
    from stream.runtime.supervisor import Pipeline

    s = Settings()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    settings = replace(
        s,
        pipeline=replace(s.pipeline, model=str(ctx.model), pace=pace, max_frames=max_frames,
                         max_batch=max_batch or s.pipeline.max_batch),
        # engine: [engine] keys over these defaults (the triton leg: kind, triton_url)
        engine=replace(s.engine, **{"kind": "onnxruntime", "threads": ctx.threads if threads is None else threads,
                                    **(engine or {})}),
        publish=replace(s.publish, endpoint=endpoint, status_interval=0.5),
        preview=replace(s.preview, enabled=preview),
    )
    specs = parse_sources([f"s{i}={video}" for i in range(sources)])
    pipeline = Pipeline(specs, settings)
    result = PipelineRun(sources=sources, pace=pace, wall_s=0.0)
    stop = threading.Event()
    sub = Subscriber(endpoint, status=True, timeout=0.05)

    def listen():
        while True:
            try:
                msg = sub.recv()
            except TimeoutError:
                if stop.is_set():
                    return
                continue
            now = time.time()
            if isinstance(msg, Prediction):
                result.predictions.append((now, msg))
            elif isinstance(msg, EndOfStream):
                result.eos[msg.source] = msg.raw
            elif isinstance(msg, Status):
                result.status[msg.source] = msg.raw
                result.status_log.append((now, msg.raw))

    def label(pid: int) -> str | None:
        for stage in list(pipeline.stages):  # the supervisor's table of stage processes
            if stage.proc is not None and stage.proc.pid == pid:
                # captures pooled; inference processes too ("inference:K" when there are several)
                return "capture" if stage.source is not None else stage.name.split(":")[0]
        return None

    sampler = CpuSampler(label_of=label)

    def sample():
        deadline = time.monotonic() + timeout
        while not stop.wait(sample_every):
            sampler.sample()
            own = os.times()
            ours = sum(sampler.by_label().values()) + (own.user + own.system) - (own0.user + own0.system)
            now = time.time()
            result.cpu_series.append((now, ours, machine_cpu_seconds()))
            result.stage_series.append((now, sampler.by_label(), (own.user + own.system) - (own0.user + own0.system)))
            if time.monotonic() > deadline and pipeline._signal is None:
                # a run that does not finish is a result too: stop it the way SIGINT would (drain, then stop)
                result.errors.append(f"bench watchdog: run exceeded {timeout:g} s, stopped")
                pipeline._signal = "bench-timeout"

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(0.3)  # the SUB socket connects before the first message (it reconnects every 20 ms)
    own0 = os.times()
    busy0 = machine_cpu_seconds()
    sampling = threading.Thread(target=sample, daemon=True)
    sampling.start()
    t0 = time.time()
    try:
        summary = pipeline.run()
        result.errors += list(summary.errors) + [f"{k}: {v['error']}" for k, v in summary.eos.items() if v.get("error")]
    finally:
        result.wall_s = time.time() - t0
        own1 = os.times()
        result.machine_busy_s = machine_cpu_seconds() - busy0
        time.sleep(0.3)  # let the last messages arrive
        stop.set()
        listener.join(2.0)
        sampling.join(2.0)
        sub.close()
    sampler.sample()
    result.cpu_by_stage = sampler.by_label()
    result.supervisor_cpu_s = (own1.user + own1.system) - (own0.user + own0.system)
    result.lost = sum(sub.lost.values())
    result.malformed = sub.malformed
    return result
