"""Issue 13: per-fold and pooled streaming numbers of the family bundles on held-out actors.

Input: `twostream eval-stream --json` reports of the fold bundles (RAW/<family>_val<v>[_int8].json,
each on its fold's held-out actors' clean and handheld development streams) and the `twostream
family eval` JSONs (EVAL/<family>_val<v>[_int8].json: clip and window accuracy on the held-out videos).

Every stream is re-scored from the windows its report holds with the runtime's own metrics
(stream.quality.metrics.score_stream, pooled with merge_scores) for the policies `none` and
`ema(alpha=0.5)` (config.toml's [policy] default), separately for clean and handheld streams, and
pooled over the four folds (each held-out actor in exactly one fold). Each network's own label per
window (the `streams` field) is scored like the window accuracy.

    python -m train.families.streams_report RAW EVAL OUT.json [KIND...]

writes EVAL/streams/<bundle>.json per fold and OUT.json (pooled per family and precision); with KINDs
(e.g. i3d_int8 i3ds2_int8) only those bundle kinds of RAW, otherwise every report in RAW.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

FOLDS = ("val01", "val23", "val45", "val6")
POLICIES = ("none", "ema:0.5")


def _runs(report: dict):
    from stream.quality.annotations import load_annotation
    from stream.quality.eval_stream import VideoRun, Window

    for v in report["videos"]:
        run = VideoRun(Path(v["video"]), load_annotation(v["annotation"]))
        run.windows = [Window(frame=w["frame"], label=w["label"], score=w["score"], fused=w["fused"],
                              streams={k: tuple(x) for k, x in w["streams"].items()})
                       for w in report["windows"][v["video"]]]
        yield run


def score(report: dict, bundle_policy: dict | None = None) -> dict:
    """{condition: {"policies": {name: (StreamScore)}, "networks": {name: [correct, windows]}}} for clean/handheld."""
    from stream.core.policy import resolve
    from stream.quality.eval_stream import parse_policy, policy_labels
    from stream.quality.metrics import action_at, score_stream

    labels = tuple(report["labels"])
    out: dict = {}
    for run in _runs(report):
        cond = "handheld" if "handheld" in run.video.name else "clean"
        slot = out.setdefault(cond, {"policies": {}, "networks": {}, "videos": []})
        slot["videos"].append(str(run.video))
        frames = [w.frame for w in run.windows]
        for spec in POLICIES:
            settings = resolve(parse_policy(spec), bundle_policy)
            s = score_stream(frames, policy_labels(run, labels, settings), run.annotation)
            slot["policies"].setdefault(settings.describe(), []).append(s)
        for w in run.windows:
            truth = action_at(run.annotation, w.frame)
            if truth is None:
                continue
            for name, (label, _score) in w.streams.items():
                acc = slot["networks"].setdefault(name, [0, 0])
                acc[0] += int(label == truth)
                acc[1] += 1
    return out


def summary(scored: dict) -> dict:
    from stream.quality.metrics import merge_scores, summarize

    out = {}
    for cond, slot in sorted(scored.items()):
        pol = {}
        for name, scores in slot["policies"].items():
            s = summarize(merge_scores(scores))
            pol[name] = {k: s[k] for k in ("windows", "window_accuracy", "settled_accuracy", "switches",
                                           "missed_switches", "switch_delay_s", "flicker_per_min")}
        out[cond] = {"videos": slot["videos"], "policies": pol,
                     "network_window_accuracy": {k: c / n for k, (c, n) in sorted(slot["networks"].items())}}
    return out


def _merge(a: dict, b: dict) -> dict:
    for cond, slot in b.items():
        dst = a.setdefault(cond, {"policies": {}, "networks": {}, "videos": []})
        dst["videos"] += slot["videos"]
        for name, scores in slot["policies"].items():
            dst["policies"].setdefault(name, []).extend(scores)
        for name, (c, n) in slot["networks"].items():
            acc = dst["networks"].setdefault(name, [0, 0])
            acc[0] += c
            acc[1] += n
    return a


def _clip(path: Path) -> dict | None:
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    return {"videos": d["videos"], "clip_accuracy": d["accuracy"], "window_accuracy": d.get("window_accuracy"),
            "windows": d.get("windows"), "command": d.get("command")}


def main(argv: list[str]) -> int:
    from engines.bundle import read_bundle

    raw, evals, out = Path(argv[0]), Path(argv[1]), Path(argv[2])
    (evals / "streams").mkdir(parents=True, exist_ok=True)
    names = sorted({p.stem.rsplit("_val", 1)[0] + ("_int8" if p.stem.endswith("_int8") else "")
                    for p in raw.glob("*.json")})
    if argv[3:]:
        names = [n for n in names if n in argv[3:]]
    pooled = {}
    for name in names:
        fam, q = (name[:-5], "_int8") if name.endswith("_int8") else (name, "")
        total: dict = {}
        clip = {"videos": 0, "correct": 0, "windows": 0, "window_correct": 0}
        folds = []
        for f in FOLDS:
            path = raw / f"{fam}_{f}{q}.json"
            ev = _clip(evals / f"{fam}_{f}{q}.json")
            if path.is_file():  # streams pooled over the folds that have them; clip accuracy over every eval
                report = json.loads(path.read_text())
                policy = read_bundle(report["model"]).policy
                scored = score(report, policy)
                doc = {"bundle": report["model"], "fold": f, "eval_stream": summary(scored), "family_eval": ev,
                       "source": str(path)}
                (evals / "streams" / f"{fam}_{f}{q}.json").write_text(json.dumps(doc, indent=1))
                _merge(total, scored)
                folds.append(f)
            if ev is not None:
                clip.setdefault("per_fold", []).append(f"{round(ev['clip_accuracy']['fused'] * ev['videos'])}/"
                                                       f"{ev['videos']}")
                clip["videos"] += ev["videos"]
                clip["correct"] += round(ev["clip_accuracy"]["fused"] * ev["videos"])
                if ev["window_accuracy"]:
                    clip["windows"] += ev["windows"]
                    clip["window_correct"] += round(ev["window_accuracy"]["fused"] * ev["windows"])
        pooled[name] = {"stream_folds": folds, "streams": summary(total),
                        "clip_accuracy": clip["correct"] / clip["videos"] if clip["videos"] else None,
                        "clip_correct": f"{clip['correct']}/{clip['videos']}",
                        "clip_correct_per_fold": clip.get("per_fold", []),
                        "window_accuracy": clip["window_correct"] / clip["windows"] if clip["windows"] else None}
        for cond in pooled[name]["streams"].values():
            cond.pop("videos")
    out.write_text(json.dumps({"schema": 1, "protocol": " ".join(__doc__.split("\n\n")[1:3]).replace("\n", " "),
                               "policy_default": "config.toml [policy] kind = ema, ema_alpha = 0.5",
                               "families": pooled}, indent=1))
    for name, p in pooled.items():
        cells = []
        for cond in ("clean", "handheld"):
            s = p["streams"].get(cond, {}).get("policies", {}).get("ema(alpha=0.5)")
            if s:
                cells.append(f"{cond} {s['window_accuracy']:.3f} delay {s['switch_delay_s']['mean']:.2f}s "
                             f"missed {s['missed_switches']}/{s['switches']}")
        print(f"{name:15s} stream folds {len(p['stream_folds'])} clip {p['clip_correct']} "
              f"({' '.join(p['clip_correct_per_fold'])}) window {p['window_accuracy'] or 0:.3f} | "
              + " | ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
