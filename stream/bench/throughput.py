"""Throughput in fast pace (every frame processed exactly once, as fast as possible): frames/s of the whole
pipeline for 1 source and for N sources, the CPU each stage process used per frame, and the
pipeline efficiency against the bound implied by the isolated stage costs.

Stage-cost bound (frames/s), with costs from the stages report (ms, one core each):
    c_cap  capture work per frame (decode + resize)        c_flow flow-stage work per frame
    c_inf  inference work per window at the run's mean batch   c_pub  publish work per window
    s      stride (frames per window)   P usable cores   N sources
    per-frame work  c = c_cap + c_flow + (c_inf + c_pub) / s
    bound = min(P * 1000 / c,           all cores busy with useful work
                1000 / c_flow,          the single flow process (one core)
                1000 * s / c_inf,       the single inference process (intra-op threads = 1)
                1000 * s / c_pub,       the supervisor publishing
                N * 1000 / c_cap)       N capture processes
    efficiency = measured steady frames/s / bound
The costs are re-measured right after every run (same machine load as the run); the bound is computed per
run and its median is the denominator. On a machine other processes also use, a second ratio divides by the
bound scaled to the cores they left free (P_avail = P - their CPU during the run, from /proc/stat).
Measured frames/s counts frames between each source's first and last published window (start-up and
drain excluded; the run's wall time including them is recorded too).
"""
from __future__ import annotations

import os

from stream.bench.common import BenchContext, looped_video, median, video_frame_count
from stream.bench.runner import run_pipeline

ROOT = "reports/throughput"


def source_counts(ctx: BenchContext) -> list[int]:
    return [1, 2] if ctx.quick else [1, 4]


def _total_frames(ctx: BenchContext) -> int:
    return 400 if ctx.quick else 4000


def prepare(ctx: BenchContext) -> None:
    n = ctx.cache.setdefault("video_frames", video_frame_count(ctx.video))
    copies = -(-_total_frames(ctx) // max(1, n))
    ctx.cache["fast_video"] = looped_video(ctx.video, copies, ctx.tmp)
    ctx.cache["throughput_runs"] = {k: [] for k in source_counts(ctx)}
    ctx.cache["preview_runs"] = []


def trial(ctx: BenchContext) -> None:
    """One fast-pace run per source count (cmd_bench alternates these with the baselines), each followed by
    a fresh measurement of the stage costs, so run and bound see the same machine load."""
    for n in source_counts(ctx):
        per_source = max(60, _total_frames(ctx) // n)
        run = run_pipeline(ctx, video=ctx.cache["fast_video"], sources=n, pace="fast", max_frames=per_source,
                           timeout=60.0 + per_source * n / 100.0)
        batches = [p.raw.get("batch", 1) for _, p in run.predictions]
        run.mean_batch = sum(batches) / max(1, len(batches))
        run.costs = stage_costs_now(ctx, max(1, min(16, round(run.mean_batch))))
        ctx.cache["throughput_runs"][n].append(run)
        fps, _, _ = run.steady_fps()
        ctx.log(f"throughput: {n} source(s) fast pace: {fps:.0f} frames/s"
                + (f" (errors: {run.errors})" if run.errors else ""))
    # The same 1-source run with JPEG previews on ([preview] defaults), alternating with the runs above.
    per_source = max(60, _total_frames(ctx))
    run = run_pipeline(ctx, video=ctx.cache["fast_video"], sources=1, pace="fast", max_frames=per_source,
                       timeout=60.0 + per_source / 100.0, preview=True)
    ctx.cache["preview_runs"].append(run)
    ctx.log(f"throughput: 1 source fast pace, preview on: {run.steady_fps()[0]:.0f} frames/s")


def stage_costs_now(ctx: BenchContext, batch: int) -> dict:
    """c_cap, c_flow (ms/frame), c_inf at `batch`, c_pub (ms/window): medians of short isolated measurements."""
    from stream.bench.common import median
    from stream.bench.stages import _decode_resize, engine_samples, flow_stage_samples, publish_samples

    dec, res, _, _ = _decode_resize(ctx, 48 if ctx.quick else 120)
    frames = ctx.frames(max_frames=48 if ctx.quick else 160)
    flow = flow_stage_samples(ctx, frames, min(len(frames) - 1, 24 if ctx.quick else 64))
    eng = engine_samples(ctx, batch)
    per_window = [sum(x) / batch for x in zip(*eng.values(), strict=True)]
    capture = [a + b for a, b in zip(dec, res, strict=True)]
    return {"c_cap": median(capture), "c_flow": median(flow), "c_inf": median(per_window),
            "c_pub": median(publish_samples(ctx)), "batch": batch}


def bound_limits(c: dict, *, cores: float, stride: int, sources: int) -> dict:
    """The frames/s each resource allows (see the module docstring); the bound is their minimum."""
    per_frame_work = c["c_cap"] + c["c_flow"] + (c["c_inf"] + c["c_pub"]) / stride
    return {"all_cores": cores * 1000.0 / per_frame_work, "flow_process": 1000.0 / c["c_flow"],
            "inference_process": 1000.0 * stride / c["c_inf"], "publisher": 1000.0 * stride / c["c_pub"],
            "capture_processes": sources * 1000.0 / c["c_cap"]}


def finish(ctx: BenchContext) -> None:
    r = ctx.report
    cores = len(os.sched_getaffinity(0))
    from stream.core.config import Settings

    stride = Settings().pipeline.stride
    for n, runs in ctx.cache["throughput_runs"].items():
        base = f"{ROOT}/sources{n}"
        steady = [x.steady_fps() for x in runs]
        r.measure(f"{base}/frames_per_s", [s[0] for s in steady], "frames/s",
                  what="steady frames/s, first to last published window, all sources")
        r.measure(f"{base}/wall_frames_per_s", [x.frames / x.wall_s for x in runs], "frames/s",
                  what="frames ÷ whole Pipeline.run() wall time (start-up and shut-down included)")
        r.put(f"{base}/frames", [x.frames for x in runs])
        r.put(f"{base}/mean_batch", [x.mean_batch for x in runs])
        r.put(f"{base}/errors", sorted({e for x in runs for e in x.errors}))
        stages = sorted({k for x in runs for k in x.cpu_by_stage} | {"supervisor"})
        per_frame = {}
        for st in stages:
            vals = [(x.supervisor_cpu_s if st == "supervisor" else x.cpu_by_stage.get(st, 0.0)) * 1000.0
                    / max(1, x.frames) for x in runs]
            per_frame[st] = median(vals)
        r.put(f"{base}/cpu_ms_per_frame_in_pipeline", per_frame)
        for key in ("c_cap", "c_flow", "c_inf", "c_pub"):
            r.measure(f"{base}/costs/{key}", [x.costs[key] for x in runs], "ms/frame" if key in ("c_cap", "c_flow")
                      else "ms/window", batches=[x.costs["batch"] for x in runs])
        bounds, bounds_avail, limits_all, avail = [], [], [], []
        for x in runs:
            limits = bound_limits(x.costs, cores=cores, stride=stride, sources=n)
            limits_all.append(limits)
            bounds.append(min(limits.values()))
            others, _ = x.others_cores(*x.steady_window())  # cores other processes used meanwhile
            p_avail = max(0.05, cores - others)
            avail.append(p_avail)
            bounds_avail.append(min(limits.values()) * p_avail / cores)
        formula = ("per run: min(P*1000/(c_cap+c_flow+(c_inf+c_pub)/s), 1000/c_flow, 1000*s/c_inf, 1000*s/c_pub, "
                   "N*1000/c_cap) with that run's costs (costs/<c>/samples[i])")
        r.measure(f"{base}/stage_bound_frames_per_s", bounds, "frames/s", formula=formula,
                  inputs={"costs": f"{base}/costs", "P": cores, "s": stride, "N": n, "limits_frames_per_s": limits_all,
                          "binding": [min(lim, key=lim.get) for lim in limits_all]})
        r.measure(f"{base}/stage_bound_available_cores_frames_per_s", bounds_avail, "frames/s",
                  formula="stage bound x P_avail / P, P_avail = P - cores used by other processes while the run was "
                          "steady (/proc/stat busy minus this pipeline's processes, sampled every 0.1 s)",
                  p_avail=avail)
        label = f"{n}source{'s' if n > 1 else ''}"
        r.ratio(f"pipeline_efficiency_{label}", f"{base}/frames_per_s", f"{base}/stage_bound_frames_per_s",
                f"measured fast-pace frames/s ÷ stage-cost bound on all {cores} cores, {n} source(s)")
        r.ratio(f"pipeline_efficiency_available_cores_{label}", f"{base}/frames_per_s",
                f"{base}/stage_bound_available_cores_frames_per_s",
                f"measured fast-pace frames/s ÷ stage-cost bound on the cores other processes left free, {n} source(s)")
    previews = ctx.cache.get("preview_runs") or []
    if previews and ctx.cache["throughput_runs"].get(1):
        r.measure(f"{ROOT}/sources1/preview_on_frames_per_s", [x.steady_fps()[0] for x in previews], "frames/s",
                  what="1 source, fast pace, [preview] enabled with its defaults")
        r.ratio("preview_on_vs_off_1source", f"{ROOT}/sources1/preview_on_frames_per_s",
                f"{ROOT}/sources1/frames_per_s", "throughput with previews on / off (1 = no cost)")
