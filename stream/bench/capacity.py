"""Real-time capacity: N copies of a 25 fps clip replayed in realtime pace (like N cameras), N = 1, 2, 4, 8,
... until a level fails. Per level: capture->publish latency p50/p99 (the published `latency_ms`, and
capture->received at a subscriber), dropped frames and windows (EOS counters), predictions lost
between publisher and subscriber (seq gaps), unaccounted frames, and CPU use (stage processes from
/proc, this supervisor process from os.times, and the whole machine from /proc/stat).

A level passes when p99 latency < 150 ms, nothing was dropped or lost, and every frame of every
source is accounted for. The capacity is the largest N that passes with every smaller level passing.
"""
from __future__ import annotations

import os

from stream.bench.common import BenchContext, looped_video, percentile, video_frame_count
from stream.bench.runner import run_pipeline

ROOT = "reports/capacity"
P99_LIMIT_MS = 150.0


def levels(ctx: BenchContext) -> list[int]:
    out, n = [], 1
    while n <= ctx.max_sources:
        out.append(n)
        n = n * 2 if n < 8 else n + 4
    return out


def run(ctx: BenchContext) -> None:
    r = ctx.report
    clip_frames = video_frame_count(ctx.capacity_video)
    # full: about 13 s of video per source (two passes of the 164-frame test clip); quick: 2 s
    if ctx.quick:
        video, max_frames = ctx.capacity_video, min(clip_frames, 50)
    else:
        video = looped_video(ctx.capacity_video, 2, ctx.tmp)
        max_frames = 0
    expected = max_frames or video_frame_count(video)
    r.put(f"{ROOT}/video", str(ctx.capacity_video))
    r.put(f"{ROOT}/frames_per_source", expected)
    r.put(f"{ROOT}/p99_limit_ms", P99_LIMIT_MS)
    cores = len(os.sched_getaffinity(0))
    capacity = 0
    for n in levels(ctx):
        run_ = run_pipeline(ctx, video=video, sources=n, pace="realtime", max_frames=max_frames,
                            timeout=60.0 + expected / 25.0)
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
        ctx.log(f"capacity: {n} source(s): p50 {level['latency_ms_p50']:.0f} ms, p99 {level['latency_ms_p99']:.0f} ms,"
                f" dropped {dropped} frames / {windows_dropped} windows, lost {run_.lost}, unaccounted {unaccounted},"
                f" CPU {100 * level['cpu_use_of_machine']:.0f}% of {cores} cores (machine "
                f"{100 * level['machine_busy_all_processes']:.0f}%) -> {'pass' if level['passed'] else 'FAIL'}")
        if not level["passed"]:
            break
        capacity = n
    r.put(f"{ROOT}/capacity_sources", capacity)
    r.put(f"{ROOT}/tested_up_to", ctx.max_sources)
