"""Streaming quality of a model on annotated videos: window accuracy, switch delay, flicker.

VIDEO_OR_DIR is a video with its annotation VIDEO.json beside it (format in
docs/streaming_quality.md; `twostream make-sequences` writes such pairs) or a directory of them.
Every video runs through the real pipeline (`twostream run --pace fast`, same code path as a
camera, every frame once) and the predictions it publishes on ZeroMQ are scored:

  window accuracy   decided label vs the annotated label of each window's newest frame
  settled accuracy  the same, over windows at least 1 s into their annotated action
  switch delay      frames/seconds from each annotated change to the first window with the new
                    label (mean, p90, max; never-reached changes are counted as missed)
  flicker           decided-label changes per minute that are not an annotated change

The fused scores are also replayed through each decision policy (--policies), giving the
numbers the runtime would publish with that [policy] setting; the selection rule picks the
policy with the smallest delay that loses no accuracy and does not flicker.

examples:
  twostream make-sequences ../shared/data/weizmann4 dev/streams
  twostream eval-stream dev/streams --model models/default --json dev/quality.json --plot dev/timeline.png
  twostream eval-stream clip.mp4 --annotation clip_labels.json --policies none,ema:0.5,hysteresis:0.2:2
"""
from __future__ import annotations

import argparse

TWO_STREAM = ("spatial", "temporal")  # window keys kept at the top level for two-stream bundles


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("targets", nargs="+", metavar="VIDEO_OR_DIR",
                   help="annotated video (VIDEO.json beside it) or a directory of them; several are pooled")
    p.add_argument("--model", help="model bundle directory (default models/default)")
    p.add_argument("--config", help="settings file for the run (its [policy] and smoothing are replaced)")
    p.add_argument("--annotation", help="annotation JSON for a single video (default: VIDEO.json beside it)")
    p.add_argument("--stride", type=int, metavar="S", help="a window closes every S frames (default: config's, 5)")
    p.add_argument("--policies", metavar="LIST",
                   help="comma-separated policies to compare: none, ema:ALPHA, vote:K, hysteresis:MARGIN:HOLD "
                        "(default: none and a grid of each kind)")
    p.add_argument("--plot-policy", metavar="POLICY", help="policy whose decided label the timeline shows "
                   "(default: the recommended one)")
    p.add_argument("--json", metavar="OUT", help="write the full report (per video and pooled) as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="write a timeline PNG (needs matplotlib)")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S", help="per-video limit (default 300 s)")


def main(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from stream.cli.run import resolve_model
    from stream.core.errors import ConfigError
    from stream.quality.eval_stream import evaluate, format_table, parse_policy, plot_timeline

    model = resolve_model(args.model)
    if args.stride is not None and not 1 <= args.stride <= 1000:
        raise ConfigError(f"--stride {args.stride}: expected 1..1000")
    candidates = [parse_policy(s) for s in args.policies.split(",") if s.strip()] if args.policies else None
    plot_policy = parse_policy(args.plot_policy) if args.plot_policy else None
    report, runs = evaluate(args.targets, model=model, config=args.config, annotation=args.annotation,
                            stride=args.stride, candidates=candidates, timeout=args.timeout)
    print(format_table(report))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        # per window: each network's [label, score] under "streams"; two-stream runs also keep "spatial"/"temporal"
        report["windows"] = {str(r.video): [{"frame": w.frame, "label": w.label, "score": w.score, "fused": w.fused,
                                             **{n: list(x) for n, x in w.streams.items() if n in TWO_STREAM},
                                             "streams": {n: list(x) for n, x in w.streams.items()}}
                                            for w in r.windows] for r in runs}
        report["change_events"] = {str(r.video): r.changes for r in runs}
        out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        print(f"report: {out}")
    if args.plot:
        if plot_policy is None:
            from stream.quality.eval_stream import DEFAULT_CANDIDATES
            by_name = {p.describe(): p for p in (candidates or DEFAULT_CANDIDATES)}
            plot_policy = by_name.get(report.get("recommended_policy") or "")
        path = plot_timeline(runs, tuple(report["labels"]), args.plot, policy=plot_policy)
        print(f"timeline: {path}")
    return 0
