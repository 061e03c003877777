"""Real-time capacity: N copies of a 25 fps clip replayed in realtime pace (like N cameras), N = 1, then
min_sources, ... (doubling to 8, then +4) until a level fails. Per level: capture->publish latency p50/p99
(the published `latency_ms`), dropped frames and windows (EOS counters), predictions lost between
publisher and subscriber (seq gaps), unaccounted frames, and CPU use (stage processes from /proc, this
supervisor process from os.times, and the whole machine from /proc/stat), and the steady per-frame CPU budget
of each stage over the middle half of the level (`steady_cpu_ms_per_frame`: start-up and drain excluded).

Latency counts schedule lag: a replayed file's frame k is stamped with the time it was due (start +
k / fps, stream.runtime.capture), not when it was decoded, so a capture that falls behind its 25 fps
schedule shows the lag in latency_ms (before, the stamp came after the decode and a lagging capture
showed neither drops nor latency). The default footage is H.264 320x240, ~52 s (common.h264_capacity_video);
each level plays `capacity_seconds` (default 24 s) of it per source.

A level passes when p99 latency (schedule lag included) < 150 ms, nothing was dropped or lost, and every
frame of every source is accounted for. The capacity is the largest N that passes with every level tried
below it passing.
"""
from __future__ import annotations

import os

from stream.bench.common import BenchContext, looped_video, percentile, video_frame_count
from stream.bench.runner import run_pipeline

ROOT = "reports/capacity"
P99_LIMIT_MS = 150.0


def levels(ctx: BenchContext) -> list[int]:
    """1 (a check), then from min_sources: doubling up to 8, then steps of 4, up to max_sources."""
    out, n = [1], max(2, ctx.min_sources)
    while n <= ctx.max_sources:
        out.append(n)
        n = n * 2 if n < 8 else n + 4
    return out


def run(ctx: BenchContext) -> None:
    r = ctx.report
    clip_frames = video_frame_count(ctx.capacity_video)
    want = max(1, round(ctx.capacity_seconds * 25.0))  # frames per source at 25 fps
    video = looped_video(ctx.capacity_video, -(-want // max(1, clip_frames)), ctx.tmp)
    max_frames = min(want, video_frame_count(video))
    expected = max_frames
    r.put(f"{ROOT}/video", str(ctx.capacity_video))
    r.put(f"{ROOT}/frames_per_source", expected)
    r.put(f"{ROOT}/latency_includes_schedule_lag", True)
    r.put(f"{ROOT}/p99_limit_ms", P99_LIMIT_MS)
    cores = len(os.sched_getaffinity(0))
    capacity = 0
    for n in levels(ctx):
        run_ = run_pipeline(ctx, video=video, sources=n, pace="realtime", max_frames=max_frames,
                            timeout=60.0 + expected / 25.0,
                            sample_every=min(0.5, max(0.1, ctx.capacity_seconds / 48.0)))
        lat = [p.latency_ms for _, p in run_.predictions]
        recv = [(t - p.t_capture) * 1000.0 for t, p in run_.predictions]
        eos = run_.eos
        dropped = sum(int(e.get("dropped", 0)) for e in eos.values())
        windows_dropped = sum(int(e.get("windows_dropped", 0)) for e in eos.values())
        windows = sum(int(e.get("windows", 0)) for e in eos.values())
        frames = sum(int(e.get("frames", 0)) for e in eos.values())
        missing_eos = n - len(eos)
        unaccounted = (n * expected - frames) + (windows - len(run_.predictions)) + missing_eos * expected
        stage_cpu = sum(run_.cpu_by_stage.values()) + run_.supervisor_cpu_s
        level = {
            "sources": n,
            "predictions": len(run_.predictions),
            "latency_ms_p50": percentile(lat, 50), "latency_ms_p99": percentile(lat, 99),
            "latency_ms_max": max(lat) if lat else float("nan"),
            "received_ms_p50": percentile(recv, 50), "received_ms_p99": percentile(recv, 99),
            "frames": frames, "frames_expected": n * expected, "dropped_frames": dropped,
            "windows_dropped": windows_dropped, "lost_predictions": run_.lost, "unaccounted": unaccounted,
            "cpu_seconds_by_stage": {**run_.cpu_by_stage, "supervisor": run_.supervisor_cpu_s},
            "cpu_use_of_machine": stage_cpu / max(1e-9, run_.wall_s) / cores,
            "machine_busy_all_processes": run_.machine_busy_s / max(1e-9, run_.wall_s) / cores,
            "wall_s": run_.wall_s, "errors": run_.errors,
        }
        # the per-frame CPU budget in the pipeline, steady state (the middle half of the run, start-up excluded)
        steady = run_.steady_cpu_ms_per_frame(n * 25.0)
        if steady:
            level["steady_cpu_ms_per_frame"] = {k: round(v, 4) for k, v in steady.items()}
            level["steady_cpu_use_of_machine"] = steady["total"] * n * 25.0 / 1000.0 / cores
        for stage in ("capture_to_flow", "queue", "inference", "publish"):
            vals = [p.stages_ms.get(stage) for _, p in run_.predictions if stage in p.stages_ms]
            if vals:
                level[f"stage_ms_p50_{stage}"] = percentile(vals, 50)
                level[f"stage_ms_p99_{stage}"] = percentile(vals, 99)
        t_first = min((t for t, _ in run_.status_log), default=0.0)
        drops, last = [], {}
        for t, st in run_.status_log:  # when frames were dropped, seconds after the first status message
            d = int(st.get("dropped", 0))
            if d > last.get(st["source"], 0):
                drops.append([round(t - t_first, 2), st["source"], d - last.get(st["source"], 0)])
            last[st["source"]] = d
        level["drop_times_s"] = drops[:50]
        batches = [p.raw.get("batch", 1) for _, p in run_.predictions]
        level["mean_batch"] = sum(batches) / max(1, len(batches))
        level["passed"] = bool(lat) and level["latency_ms_p99"] < P99_LIMIT_MS and dropped == 0 \
            and windows_dropped == 0 and run_.lost == 0 and unaccounted == 0 and not run_.errors
        r.put(f"{ROOT}/levels/sources{n}", level)
        budget = "" if not steady else (
            " steady CPU ms/frame " + ", ".join(f"{k} {v:.2f}" for k, v in steady.items() if k != "seconds"))
        ctx.log(f"capacity: {n} source(s): p50 {level['latency_ms_p50']:.0f} ms, p99 {level['latency_ms_p99']:.0f} ms,"
                f" dropped {dropped} frames / {windows_dropped} windows, lost {run_.lost}, unaccounted {unaccounted},"
                f" CPU {100 * level['cpu_use_of_machine']:.0f}% of {cores} cores (machine "
                f"{100 * level['machine_busy_all_processes']:.0f}%) -> {'pass' if level['passed'] else 'FAIL'};"
                f"{budget}")
        if not level["passed"]:
            break
        capacity = n
    r.put(f"{ROOT}/capacity_sources", capacity)
    r.put(f"{ROOT}/tested_up_to", ctx.max_sources)
