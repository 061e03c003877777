"""Throughput in fast pace (every frame processed exactly once, as fast as possible): frames/s of the whole
pipeline for 1 source and for N sources, the CPU each stage process used per frame, and the
pipeline efficiency against the bound implied by the isolated stage costs.

Stage-cost bound (frames/s), with costs from the stages report (ms, one core each):
    c_cap  capture work per frame (decode + resize)        c_flow flow-stage work per frame
    c_inf  inference work per window at the run's batch     c_pub  publish work per window
    s      stride (frames per window)   P usable cores   N sources
    per-frame work  c = c_cap + c_flow + (c_inf + c_pub) / s
    bound = min(P * 1000 / c,           all cores busy with useful work
                1000 / c_flow,          the single flow process (one core)
                1000 * s / c_inf,       the single inference process (intra-op threads = 1)
                1000 * s / c_pub,       the supervisor publishing
                N * 1000 / c_cap)       N capture processes
    efficiency = measured steady frames/s / bound
Measured frames/s counts frames between each source's first and last published window (start-up and
drain excluded; the run's wall time including them is recorded too).
"""
from __future__ import annotations

import os

from stream.bench.common import BenchContext, looped_video, median, video_frame_count
from stream.bench.runner import run_pipeline
from stream.bench.stages import ensure_costs

ROOT = "reports/throughput"


def source_counts(ctx: BenchContext) -> list[int]:
    return [1, 2] if ctx.quick else [1, 4]


def _total_frames(ctx: BenchContext) -> int:
    return 400 if ctx.quick else 4000


def prepare(ctx: BenchContext) -> None:
    ensure_costs(ctx)
    n = ctx.cache.setdefault("video_frames", video_frame_count(ctx.video))
    copies = -(-_total_frames(ctx) // max(1, n))
    ctx.cache["fast_video"] = looped_video(ctx.video, copies, ctx.tmp)
    ctx.cache["throughput_runs"] = {k: [] for k in source_counts(ctx)}


def trial(ctx: BenchContext) -> None:
    """One fast-pace run per source count (cmd_bench alternates these with the baselines)."""
    for n in source_counts(ctx):
        per_source = max(60, _total_frames(ctx) // n)
        run = run_pipeline(ctx, video=ctx.cache["fast_video"], sources=n, pace="fast", max_frames=per_source)
        ctx.cache["throughput_runs"][n].append(run)
        fps, _, _ = run.steady_fps()
        ctx.log(f"throughput: {n} source(s) fast pace: {fps:.0f} frames/s"
                + (f" (errors: {run.errors})" if run.errors else ""))


def _nearest_batch(costs: dict, batch: float) -> int:
    sizes = sorted(costs["inference"])
    return min(sizes, key=lambda b: (abs(b - batch), b))


def finish(ctx: BenchContext) -> None:
    r = ctx.report
    costs = ensure_costs(ctx)
    cores = len(os.sched_getaffinity(0))
    from stream.config import Settings

    stride = Settings().pipeline.stride
    for n, runs in ctx.cache["throughput_runs"].items():
        base = f"{ROOT}/sources{n}"
        steady = [x.steady_fps() for x in runs]
        r.measure(f"{base}/frames_per_s", [s[0] for s in steady], "frames/s",
                  what="steady frames/s, first to last published window, all sources")
        r.measure(f"{base}/wall_frames_per_s", [x.frames / x.wall_s for x in runs], "frames/s",
                  what="frames ÷ whole Pipeline.run() wall time (start-up and shut-down included)")
        r.put(f"{base}/frames", [x.frames for x in runs])
        batches = [p.raw.get("batch", 1) for x in runs for _, p in x.predictions]
        mean_batch = sum(batches) / max(1, len(batches))
        r.put(f"{base}/mean_batch", mean_batch)
        r.put(f"{base}/errors", sorted({e for x in runs for e in x.errors}))
        stages = sorted({k for x in runs for k in x.cpu_by_stage} | {"supervisor"})
        per_frame = {}
        for st in stages:
            vals = [(x.supervisor_cpu_s if st == "supervisor" else x.cpu_by_stage.get(st, 0.0)) * 1000.0
                    / max(1, x.frames) for x in runs]
            per_frame[st] = median(vals)
        r.put(f"{base}/cpu_ms_per_frame_in_pipeline", per_frame)
        b = _nearest_batch(costs, mean_batch)
        paths = {"c_cap": costs["capture"], "c_flow": costs["flow"], "c_inf": costs["inference"][b],
                 "c_pub": costs["publish"]}
        c = {k: r.value(p) for k, p in paths.items()}
        per_frame_work = c["c_cap"] + c["c_flow"] + (c["c_inf"] + c["c_pub"]) / stride
        limits = {"all_cores": cores * 1000.0 / per_frame_work, "flow_process": 1000.0 / c["c_flow"],
                  "inference_process": 1000.0 * stride / c["c_inf"], "publisher": 1000.0 * stride / c["c_pub"],
                  "capture_processes": n * 1000.0 / c["c_cap"]}
        bound = min(limits.values())
        r.derived(f"{base}/stage_bound_frames_per_s", bound, "frames/s",
                  "min(P*1000/(c_cap+c_flow+(c_inf+c_pub)/s), 1000/c_flow, 1000*s/c_inf, 1000*s/c_pub, N*1000/c_cap)",
                  {**paths, "P": cores, "s": stride, "N": n, "batch_for_c_inf": b, "costs_ms": c,
                   "limits_frames_per_s": limits, "binding": min(limits, key=limits.get)})
        r.ratio(f"pipeline_efficiency_{n}source{'s' if n > 1 else ''}", f"{base}/frames_per_s",
                f"{base}/stage_bound_frames_per_s",
                f"measured fast-pace frames/s ÷ stage-cost bound, {n} source(s)")
