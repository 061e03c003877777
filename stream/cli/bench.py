"""Benchmark twostream on this machine: every stage, the whole pipeline, and baselines, side by side.

Sub-reports (all by default; pick with --only a,b):
  stages           decode, resize, flow per backend (DIS presets, Farneback, TV-L1) at the model size,
                   window preparation, spatial/temporal engines per window at several batch sizes,
                   fusion and publish cost
  engine-vs-eager  the bundle's networks in ONNX Runtime vs torch eager, same inputs, same threads
  throughput       fast pace (every frame once): frames/s for 1 and N sources, CPU per stage, and the
                   pipeline efficiency = measured frames/s / the bound implied by the stage costs
  capacity         N realtime-paced replayed 25 fps sources (N = 1, 2, 4, 8, ...): latency p50/p99,
                   drops, CPU; capacity = largest N with p99 < 150 ms and nothing dropped or lost
  baselines        (a) seed recipe: TV-L1 + torch eager in one plain loop; (b) the same loop with DIS;
                   speed-ups of the pipeline over both (run alternately with the throughput runs)
  flow-quality     temporal accuracy per flow backend (via `twostream eval`) beside its cost
  triton           the networks on a real local tritonserver vs in-process ONNX Runtime: ms per batch and
                   1-source frames/s (`make triton-server` installs it; skipped with a note without it)

Any bundle family (docs/bundles.md): stages and engine-vs-eager time each network of the bundle (its
window inputs built as the runtime builds them; no flow cost when no network takes a flow_stack),
throughput and capacity run the pipeline on it; baselines and flow-quality, defined for two-stream
bundles only, say `skipped: <reason>` for the others.

Every value is a median over repeats; every ratio divides two measurements taken in this invocation
(the JSON names both). Absolute numbers on a shared machine are noisy: compare ratios.
torch is only needed for engine-vs-eager and baselines (skipped with a note without it).

examples:
  twostream bench --quick
  twostream bench --json runs/bench/full.json
  twostream bench --only stages,engine-vs-eager --model models/default
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPORTS = ("stages", "engine-vs-eager", "throughput", "capacity", "baselines", "flow-quality", "triton")
REPO = Path(__file__).resolve().parents[2]


def data_dir() -> Path | None:
    env = os.environ.get("TWOSTREAM_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if path.is_dir() else None


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model bundle (default models/default)")
    p.add_argument("--video", help="footage for stages, throughput and baselines (default: the H.264 320x240 footage "
                                   "of --capacity-video; assets/demo.mp4 without DATA)")
    p.add_argument("--capacity-video", help="the realtime source replayed N times (default: ~52 s of DATA's real "
                                            "clips encoded as H.264 320x240 25 fps with ffmpeg, as cameras send)")
    p.add_argument("--min-sources", type=int, default=1,
                   help="capacity: first level above 1 source tried (1 source is always run first as a check)")
    p.add_argument("--capacity-seconds", type=float,
                   help="capacity: seconds of video per source and level (default 24; --quick: 2)")
    p.add_argument("--quality-data", help="labelled folder-per-class dataset for flow-quality "
                                          "(default DATA/weizmann4)")
    p.add_argument("--quality-model", help="bundle scored by flow-quality (default --model); a bundle trained with "
                                           "a group split is scored on its held-out videos")
    p.add_argument("--only", help=f"comma-separated sub-reports: {', '.join(REPORTS)}")
    p.add_argument("--quick", action="store_true", help="small inputs and few repeats (under 2 minutes)")
    p.add_argument("--repeats", type=int, help="repeats per measurement (default 3; --quick: 2)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads, as [engine] threads")
    p.add_argument("--max-sources", type=int, help="capacity: highest N tried (default 16; --quick: 2)")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the full report here")


def _resolve_inputs(args) -> dict:
    from stream.core.errors import ConfigError

    data = data_dir()
    model = Path(args.model) if args.model else REPO / "models" / "default"
    if not (model / "bundle.toml").is_file():
        raise ConfigError(f"--model {model}: not a model bundle (no bundle.toml); pass --model DIR")
    # What cameras send: ~52 s of DATA's real clips as H.264 320x240 25 fps (stream.bench.common.CAPACITY_CLIPS),
    # encoded once into a cache folder; without DATA or ffmpeg, the bundled 128x128 demo clip.
    from stream.bench.common import h264_capacity_video

    cache = Path(tempfile.gettempdir()) / "twostream-bench-cache"
    cache.mkdir(exist_ok=True)
    camera_like = h264_capacity_video(data, cache) if data is not None else None
    video = Path(args.video) if args.video else (camera_like or REPO / "assets" / "demo.mp4")
    if not video.is_file():
        raise ConfigError(f"--video {video}: no such file")
    cap_video = Path(args.capacity_video) if args.capacity_video else (camera_like or video)
    if not cap_video.is_file():
        raise ConfigError(f"--capacity-video {cap_video}: no such file")
    quality = Path(args.quality_data) if args.quality_data else (data / "weizmann4" if data else None)
    return {"model": model, "video": video, "capacity_video": cap_video, "quality_data": quality}


def _selected(only: str | None) -> list[str]:
    from stream.core.errors import ConfigError

    if not only:
        return list(REPORTS)
    names = [x.strip() for x in only.split(",") if x.strip()]
    bad = [n for n in names if n not in REPORTS]
    if bad:
        raise ConfigError(f"--only {only!r}: unknown sub-report(s) {', '.join(bad)} (known: {', '.join(REPORTS)})")
    return [n for n in REPORTS if n in names]


def _targets(report, ctx) -> None:
    r = report

    def ratio_target(name: str, minimum: float, label: str) -> None:
        x = r.find_ratio(name)
        if x is not None:
            r.target(label, x["value"] >= minimum, f"{name} = {x['value']:.3g} (target >= {minimum:g})")

    if "capacity" in r.doc["reports"]:
        cap = r.get("reports/capacity/capacity_sources")
        tested = r.get("reports/capacity/tested_up_to")
        met = True if cap >= 32 else (False if tested >= 32 or cap < tested else None)
        r.target(">= 32 realtime 25 fps sources, p99 < 150 ms with schedule lag, nothing dropped or unaccounted", met,
                 f"capacity {cap} source(s) (tried up to {tested})")
    for x in list(r.doc["ratios"]):
        if x["name"].startswith("pipeline_efficiency"):
            ratio_target(x["name"], 0.7, f"pipeline efficiency >= 0.7 ({x['name'].split('_', 2)[2]})")
        elif x["name"].startswith("speedup_vs_dis_eager_loop"):
            ratio_target(x["name"], 3.0, f">= 3x plain DIS + torch eager loop ({x['name'].rsplit('_', 1)[1]})")
        elif x["name"].startswith("speedup_vs_seed_recipe"):
            ratio_target(x["name"], 100.0, f">= 100x seed recipe, speed only ({x['name'].rsplit('_', 1)[1]})")
        elif x["name"].startswith("onnxruntime_fp32_speedup_vs_torch_eager_fp32"):
            ratio_target(x["name"], 1.5, f"ONNX Runtime fp32 >= 1.5x torch eager fp32, same threads "
                                         f"({x['name'].rsplit('_', 1)[1]})")


def format_table(report) -> str:
    """The readable summary printed after a run (the JSON has everything)."""
    from stream.bench import stages

    doc = report.doc
    lines = []

    class _C:  # stages.rows only needs .report
        pass

    c = _C()
    c.report = report
    rows = stages.rows(c)
    reps = doc["reports"]
    ev = reps.get("engine_vs_eager", {})
    for key, m in ev.items():
        if key.startswith("batch"):
            eager = f"{m['torch_eager_ms_per_window']['median']:.2f}" if "torch_eager_ms_per_window" in m else "-"
            rows.append((f"engine {key}: onnxruntime / torch eager ms/window",
                         f"{m['onnxruntime_ms_per_window']['median']:.2f} / {eager}"))
            for name, n in m.get("networks", {}).items():
                rows.append((f"engine {key} {name}: onnxruntime ms/window",
                             f"{n['onnxruntime_ms_per_window']['median']:.2f}"))
    for key, m in reps.get("throughput", {}).items():
        if not isinstance(m, dict) or "stage_bound_frames_per_s" not in m:
            continue
        b = m["stage_bound_frames_per_s"]
        rows.append((f"throughput {key}: frames/s (stage bound [interval], binding; on free cores)",
                     f"{m['frames_per_s']['median']:.0f} ({b['value']:.0f} [{b['low']:.0f}-{b['high']:.0f}], "
                     f"{b['inputs']['binding']}; {m['stage_bound_available_cores_frames_per_s']['value']:.0f})"))
    for key, m in reps.get("baselines", {}).items():
        if isinstance(m, dict) and "frames_per_s" in m:
            rows.append((f"baseline {key}: frames/s", f"{m['frames_per_s']['median']:.1f}"))
    for key, m in reps.get("capacity", {}).get("levels", {}).items():
        rows.append((f"capacity {key}: p50/p99 ms, dropped, unaccounted, CPU",
                     f"{m['latency_ms_p50']:.0f}/{m['latency_ms_p99']:.0f}, {m['dropped_frames']}+"
                     f"{m['windows_dropped']}w, {m['unaccounted']}, {100 * m['cpu_use_of_machine']:.0f}% "
                     f"{'pass' if m['passed'] else 'FAIL'}"))
    if "capacity" in reps:
        rows.append(("capacity (sources)", str(reps["capacity"].get("capacity_sources"))))
    for key, m in reps.get("flow_quality", {}).get("backends", {}).items():
        if "temporal_accuracy" in m:
            cost = f", {m['flow_ms_per_pair']:.2f} ms/pair" if "flow_ms_per_pair" in m else ""
            rows.append((f"flow-quality {key}: temporal / fused acc", f"{m['temporal_accuracy']:.3f} / "
                         f"{m['fused_accuracy']:.3f}{cost}"))
    for name, rep in reps.items():  # sub-reports (or parts) not defined for this bundle: one line each
        for key in sorted(k for k in rep if k == "skipped" or k.endswith("_skipped")):
            rows.append((f"{name} {key}".replace("_skipped", "").replace(" skipped", ""), f"skipped: {rep[key]}"))
    width = max([len(a) for a, _ in rows] + [10])
    lines += [f"{a:<{width}}  {b}" for a, b in rows]
    if doc["ratios"]:
        lines.append("")
        lines.append("ratios (numerator / denominator, both measured in this run):")
        for x in doc["ratios"]:
            spread = f"  [{x['interval'][0]:.3g}-{x['interval'][1]:.3g}]" if "interval" in x else ""
            flag = "  ABOVE 1: NOT A BOUND (see note)" if x.get("above_one") else ""
            lines.append(f"  {x['name']:<44} {x['value']:8.3g}  = {x['numerator_value']:.4g} / "
                         f"{x['denominator_value']:.4g}{spread}{flag}")
    if doc["targets"]:
        lines.append("")
        lines.append("targets:")
        for t in doc["targets"]:
            mark = {True: "met", False: "NOT met", None: "not tested"}[t["met"]]
            lines.append(f"  [{mark}] {t['target']}: {t['detail']}")
    for n in doc["notes"]:
        lines.append(f"note: {n}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    import cv2

    from stream.bench import baselines, capacity, engine_vs_eager, flow_quality, stages, throughput
    from stream.bench.common import BenchContext, Report, machine_info
    from stream.core.errors import ConfigError

    selected = _selected(args.only)
    inputs = _resolve_inputs(args)
    repeats = args.repeats or (2 if args.quick else 3)
    if repeats < 1:
        raise ConfigError("--repeats must be >= 1")
    max_sources = args.max_sources or (2 if args.quick else 16)
    cv2.setNumThreads(1)
    report = Report()
    report.doc["machine"] = machine_info()
    report.doc["config"] = {"command": "twostream bench " + " ".join(sys.argv[2:]), "selected": selected,
                            "quick": args.quick, "repeats": repeats, "threads": args.threads,
                            "max_sources": max_sources, **{k: str(v) for k, v in inputs.items()}}
    t_start = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="twostream-bench-") as tmp:
        # one snapshot of the bundle for the whole invocation: every part measures the same model even if
        # the bundle directory is replaced meanwhile (it was, during a run on the shared dev machine)
        snapshot = Path(tmp) / "model"
        shutil.copytree(inputs["model"], snapshot)
        report.doc["config"]["model_snapshot_of"] = str(inputs["model"])
        ctx = BenchContext(model=snapshot, video=inputs["video"], capacity_video=inputs["capacity_video"],
                           quality_data=inputs["quality_data"],
                           quality_model=Path(args.quality_model) if args.quality_model else None,
                           quick=args.quick, repeats=repeats,
                           threads=args.threads, max_sources=max_sources, tmp=Path(tmp), report=report, log=log,
                           min_sources=max(1, args.min_sources),
                           capacity_seconds=args.capacity_seconds or (2.0 if args.quick else 24.0))
        report.doc["config"]["bundle"] = {"family": ctx.bundle.family,
                                          "networks": [n.name for n in ctx.bundle.networks],
                                          "input_size": ctx.bundle.input_size, "flow_length": ctx.bundle.flow_length,
                                          "flow": ctx.bundle.flow.as_dict(), "arch": ctx.bundle.arch,
                                          "classes": len(ctx.bundle.labels)}
        if "stages" in selected:
            stages.run(ctx)
        if "engine-vs-eager" in selected:
            engine_vs_eager.run(ctx)
        # throughput and baselines alternate, round by round, so load drift hits both alike
        do_tp, do_bl = "throughput" in selected, "baselines" in selected
        if do_tp:
            throughput.prepare(ctx)
        if do_bl:
            if "fast_video" not in ctx.cache:
                throughput.prepare(ctx)
            skip = baselines.prepare(ctx)
            if skip:
                report.put("reports/baselines/skipped", skip)
                do_bl = False
        for _ in range(repeats if (do_tp or do_bl) else 0):
            if do_tp:
                throughput.trial(ctx)
            if do_bl:
                baselines.trial(ctx)
        if do_tp:
            throughput.finish(ctx)
        if do_bl:
            baselines.finish(ctx)
        if "capacity" in selected:
            capacity.run(ctx)
        if "flow-quality" in selected:
            flow_quality.run(ctx)
        if "triton" in selected:
            from stream.bench import triton

            triton.run(ctx)
    report.doc["machine"]["load_end"] = list(os.getloadavg())
    report.doc["config"]["seconds"] = round(time.time() - t_start, 1)
    _targets(report, ctx)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.doc, indent=1, default=str))
    print(format_table(report))
    return 0
