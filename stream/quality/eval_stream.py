"""Streaming evaluation: run the real pipeline on annotated videos and score what it publishes.

Each video is played through `python -m stream.cli run --pace fast` (a subprocess: the same
capture -> flow -> inference -> publish path as a camera, every frame processed once) and the
published predictions are collected with stream.clients.client until end of stream. The scores are
then computed by stream.quality.metrics on (window frame, decided label) pairs.

Besides the labels the runtime published, the same fused score sequence is replayed offline
through candidate decision policies (stream.core.policy is deterministic and pure, so this gives
exactly what the runtime would publish with that [policy] setting, without re-running the
networks). For that the run publishes every class's fused score (top_k = number of classes)
with the runtime's own smoothing and policy turned off.
"""
from __future__ import annotations

import sys
import tempfile
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from stream.core.errors import SourceError, TwostreamError
from stream.core.policy import BACKGROUND_LABEL, NONE_LABEL, PolicySettings, decide_all, resolve
from stream.core.toml_writer import write_toml
from stream.quality.annotations import Annotation, annotation_for_video, load_annotation
from stream.quality.harness import run_and_collect
from stream.quality.metrics import StreamScore, merge_scores, score_stream, summarize

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
SOURCE_NAME = "eval"

# The policies measured by default: the raw argmax and a small grid of each smoothing kind.
DEFAULT_CANDIDATES = (
    [PolicySettings(kind="none")]
    + [PolicySettings(kind="ema", ema_alpha=a) for a in (0.7, 0.5, 0.3, 0.2)]
    + [PolicySettings(kind="vote", vote_k=k) for k in (3, 5, 7)]
    + [PolicySettings(kind="hysteresis", margin=m, hold=h) for m in (0.1, 0.2, 0.3, 0.4) for h in (1, 2, 3)]
)


@dataclass(frozen=True)
class Window:
    """One published prediction, as eval-stream keeps it."""

    frame: int
    label: str  # label the runtime decided
    score: float
    fused: dict[str, float]  # every class's fused score (from `top`)
    streams: dict[str, tuple[str, float]]  # each network's (label, score) by name (two-stream: spatial, temporal)


@dataclass
class VideoRun:
    video: Path
    annotation: Annotation
    windows: list[Window] = field(default_factory=list)
    changes: list[dict] = field(default_factory=list)  # change events, if the runtime publishes them
    eos: dict = field(default_factory=dict)
    seconds: float = 0.0


def find_videos(path: str | Path, annotation: str | Path | None = None) -> list[tuple[Path, Path]]:
    """(video, annotation) pairs: a video and VIDEO.json (or `annotation`), or every annotated video in a dir."""
    path = Path(path)
    if path.is_dir():
        if annotation is not None:
            raise SourceError(f"{path}: --annotation needs a single video, not a directory")
        pairs = [(v, annotation_for_video(v)) for v in sorted(path.iterdir())
                 if v.suffix.lower() in VIDEO_SUFFIXES and annotation_for_video(v).is_file()]
        if not pairs:
            raise SourceError(f"{path}: no video with an annotation beside it (VIDEO.mp4 + VIDEO.json)")
        return pairs
    if not path.is_file():
        raise SourceError(f"{path}: no such video file or directory")
    ann = Path(annotation) if annotation is not None else annotation_for_video(path)
    if not ann.is_file():
        raise SourceError(f"{path}: no annotation {ann} "
                          f"(write one, see docs/streaming_quality.md, or pass --annotation)")
    return [(path, ann)]


def eval_config(base: str | Path | None, num_classes: int, stride: int | None) -> dict:
    """The run's settings: the user's config with every class's score published and no runtime smoothing/policy."""
    from stream.core.config import Settings

    doc: dict = {}
    if base is not None:
        base = Path(base)
        try:
            doc = tomllib.loads(base.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise TwostreamError(f"--config {base}: cannot read ({exc})") from None
    if num_classes > 100:
        raise TwostreamError(f"bundle has {num_classes} classes; eval-stream can publish at most 100 scores per window")
    doc.setdefault("fusion", {})["top_k"] = num_classes
    sections = {f.name: {g.name for g in fields(f.default_factory())} for f in fields(Settings)}
    if "smoothing" in sections.get("fusion", ()):  # older runtimes smoothed in the publisher
        doc["fusion"]["smoothing"] = 1
    doc.setdefault("pipeline", {})["pace"] = "fast"
    if stride is not None:
        doc["pipeline"]["stride"] = stride
    if "policy" in sections:  # the runtime's own policy off: published labels = argmax, scores = raw fused
        doc.setdefault("policy", {})["kind"] = "none"
    return doc


def _streams(msg) -> dict:
    """A prediction's per-network top-1 by name (bundle format 2), spatial/temporal for two-stream messages."""
    return msg.streams or {"spatial": msg.spatial, "temporal": msg.temporal}


def run_video(video: Path, annotation: Annotation, *, model: str, config: Path, timeout: float = 120.0,
              python: str = sys.executable) -> VideoRun:
    """Play one video through `twostream run --pace fast` and collect everything it publishes."""
    from stream.clients.client import Change, EndOfStream, Prediction

    result = VideoRun(video=video, annotation=annotation)
    run = run_and_collect(["--config", str(config), "--model", model, "--pace", "fast", "-q", f"{SOURCE_NAME}={video}"],
                          timeout=timeout, sources=[SOURCE_NAME], status=False, expect_eos=1, python=python)
    if run.timed_out:
        raise TwostreamError(f"{video}: no end of stream within {timeout:g} s")
    for msg in run.messages:
        if isinstance(msg, Prediction):
            if not result.windows and msg.seq != 0:
                raise TwostreamError(f"{video}: missed the first {msg.seq} predictions (subscriber joined late)")
            result.windows.append(Window(
                frame=msg.frame, label=msg.label, score=msg.score, fused={t.label: t.score for t in msg.top},
                streams={name: (x.label, x.score) for name, x in _streams(msg).items()}))
        elif isinstance(msg, Change):
            result.changes.append(msg.raw)
        elif isinstance(msg, EndOfStream):
            result.eos = msg.raw
            break
    result.seconds = run.seconds
    if not result.eos:
        tail = (run.proc.stderr or "").strip().splitlines()[-3:]
        raise TwostreamError(f"{video}: the pipeline ended without end of stream (exit {run.proc.returncode}): "
                             + " | ".join(tail))
    if result.eos.get("error"):
        raise TwostreamError(f"{video}: the pipeline reported: {result.eos['error']}")
    lost = run.lost.get(SOURCE_NAME, 0)
    if lost or len(result.windows) != result.eos.get("windows", len(result.windows)):
        raise TwostreamError(f"{video}: {lost or result.eos.get('windows', 0) - len(result.windows)} prediction(s) "
                             "were lost between the pipeline and eval-stream")
    if result.eos.get("frames") not in (None, annotation.frames):
        print(f"eval-stream: warning: {video}: the pipeline read {result.eos['frames']} frames, the annotation says "
              f"{annotation.frames}", file=sys.stderr)
    return result


def fused_matrix(run: VideoRun, labels: tuple[str, ...]) -> np.ndarray:
    """(windows, classes) fused scores in bundle label order."""
    out = np.zeros((len(run.windows), len(labels)))
    for i, w in enumerate(run.windows):
        missing = set(labels) - set(w.fused)
        if missing:
            raise TwostreamError(f"{run.video}: window at frame {w.frame} lacks scores for {sorted(missing)[:3]} "
                                 "(the run must publish top_k = number of classes)")
        out[i] = [w.fused[label] for label in labels]
    return out


def policy_labels(run: VideoRun, labels: tuple[str, ...], settings: PolicySettings) -> list[str]:
    """Decided label names ("none" included) of `settings` replayed on the run's fused scores."""
    return [d.name(labels) for d in decide_all(fused_matrix(run, labels), settings, labels)]


def score_runs(runs: list[VideoRun], labels: tuple[str, ...],
               candidates: list[PolicySettings], bundle_policy: dict | None = None) -> dict:
    """Per-video and pooled metrics for the published labels and for every candidate policy.

    Candidates take the bundle's "none" rules (min_score, min_margin, background) unless they set
    their own, exactly as `twostream run` would (stream.core.policy.resolve)."""
    candidates = [resolve(c, bundle_policy) for c in candidates]
    videos = []
    pooled_runtime: list[StreamScore] = []
    pooled: dict[str, list[StreamScore]] = {c.describe(): [] for c in candidates}
    for run in runs:
        frames = [w.frame for w in run.windows]
        published = score_stream(frames, [w.label for w in run.windows], run.annotation)
        pooled_runtime.append(published)
        per_policy = {}
        for c in candidates:
            s = score_stream(frames, policy_labels(run, labels, c), run.annotation)
            pooled[c.describe()].append(s)
            per_policy[c.describe()] = summarize(s)
        videos.append({"video": str(run.video), "annotation": run.annotation.path, "frames": run.annotation.frames,
                       "fps": run.annotation.fps, "windows": len(run.windows), "seconds": round(run.seconds, 2),
                       "change_events": len(run.changes), "published": summarize(published),
                       "policies": per_policy})
    return {
        "videos": videos,
        "published": summarize(merge_scores(pooled_runtime)),
        "policies": {name: summarize(merge_scores(scores)) for name, scores in pooled.items()},
    }


def choose_policy(policies: dict[str, dict], *, accuracy_slack: float = 0.005,
                  missed_slack: float = 0.02) -> str | None:
    """The selection rule of docs/streaming_quality.md.

    Keep the policies that lose no accuracy against "none": window accuracy and settled accuracy
    both at least none's minus `accuracy_slack`, and at most `missed_slack` x switches more missed
    switches; among them take the lowest flicker (ties: smaller mean switch delay). Delay is bounded
    by the accuracy condition itself: lag after every change lowers window accuracy.
    """
    base = policies.get("none") or next((p for n, p in policies.items() if n.split()[0] == "none"), None)
    if base is None or base["window_accuracy"] is None or base["settled_accuracy"] is None:
        return None
    keep = [(name, p) for name, p in policies.items()
            if p["window_accuracy"] >= base["window_accuracy"] - accuracy_slack
            and p["settled_accuracy"] is not None and p["settled_accuracy"] >= base["settled_accuracy"] - accuracy_slack
            and p["missed_switches"] <= base["missed_switches"] + missed_slack * base["switches"]]

    def key(item):
        p = item[1]
        delay = p["switch_delay_s"]["mean"]
        return (p["flicker_per_min"] or 0.0, float("inf") if delay is None else delay)
    return min(keep, key=key)[0] if keep else None


def evaluate(targets: list[str | Path] | str | Path, *, model: str, config: str | Path | None = None,
             annotation: str | None = None, stride: int | None = None, candidates: list[PolicySettings] | None = None,
             timeout: float = 300.0, progress: bool = True) -> tuple[dict, list[VideoRun]]:
    """Run every annotated video of `target` and score it; returns (report, runs)."""
    from engines.bundle import read_bundle

    bundle = read_bundle(model)
    targets = [targets] if isinstance(targets, (str, Path)) else list(targets)
    if annotation is not None and len(targets) != 1:
        raise SourceError("--annotation needs a single video")
    pairs = [pair for t in targets for pair in find_videos(t, annotation)]
    annotations = [(v, load_annotation(a)) for v, a in pairs]
    for _video, ann in annotations:
        unknown = set(ann.labels) - set(bundle.labels) - {NONE_LABEL, BACKGROUND_LABEL}
        if unknown:
            raise TwostreamError(f"{ann.path}: label(s) {', '.join(sorted(unknown))} are not in the model's labels "
                                 f"({', '.join(bundle.labels)})")
    candidates = list(candidates if candidates is not None else DEFAULT_CANDIDATES)
    runs = []
    with tempfile.TemporaryDirectory(prefix="twostream-eval-") as tmp:
        cfg = Path(tmp) / "config.toml"
        write_toml(cfg, eval_config(config, bundle.num_classes, stride))
        for i, (video, ann) in enumerate(annotations):
            if progress:
                print(f"eval-stream: [{i + 1}/{len(annotations)}] {video}", file=sys.stderr, flush=True)
            runs.append(run_video(video, ann, model=str(model), config=cfg, timeout=timeout))
    report = {"schema": 1, "model": str(model), "labels": list(bundle.labels), "targets": [str(t) for t in targets],
              **score_runs(runs, bundle.labels, candidates, bundle.policy)}
    report["recommended_policy"] = choose_policy(report["policies"])
    return report, runs


def plot_timeline(runs: list[VideoRun], labels: tuple[str, ...], out: str | Path,
                  policy: PolicySettings | None = None) -> Path:
    """Timeline PNG per video: annotation, decided label, each network's label as colour bands, scores below."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        raise TwostreamError("--plot needs matplotlib "
                             "(pip install 'twostream[train]' or pip install matplotlib)") from None
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    colors = {label: cmap(i % 20) for i, label in enumerate(labels)}
    fig, axes = plt.subplots(2 * len(runs), 1, figsize=(12, 2.6 * len(runs) + 0.6), squeeze=False,
                             gridspec_kw={"height_ratios": [1.4, 1.0] * len(runs)})
    names = list(runs[0].windows[0].streams) if runs and runs[0].windows else ["spatial", "temporal"]
    rows = ["annotation", "decided" if policy is None else f"decided: {policy.describe()}", *names]
    top = len(rows) - 1  # band rows from the top: annotation at `top`, decided at top - 1, networks below
    for r, run in enumerate(runs):
        band, score_ax = axes[2 * r][0], axes[2 * r + 1][0]
        fps = run.annotation.fps
        for seg in run.annotation.segments:
            band.broken_barh([(seg.start / fps, seg.length / fps)], (top, 0.8), color=colors.get(seg.label, "grey"))
        frames = np.array([w.frame for w in run.windows])
        if len(frames):
            step = np.diff(frames, append=frames[-1] + (frames[-1] - frames[-2] if len(frames) > 1 else 1))
            decided = [w.label for w in run.windows] if policy is None else policy_labels(run, labels, policy)
            bands = [(top - 1, decided)] + [(top - 2 - k, [w.streams[n][0] for w in run.windows])
                                            for k, n in enumerate(names)]
            for row, seq in bands:
                for f, s, label in zip(frames, step, seq, strict=True):
                    band.broken_barh([(f / fps, s / fps)], (row, 0.8), color=colors.get(label, "grey"))
            t = frames / fps
            score_ax.plot(t, [w.score for w in run.windows], color="black", lw=1.2, label="fused (published label)")
            for n, color in zip(names, ("tab:blue", "tab:red", "tab:green", "tab:purple") * 2, strict=False):
                score_ax.plot(t, [w.streams[n][1] for w in run.windows], color=color, lw=0.8, alpha=0.8,
                              label=f"{n} (its label)")
        for ch in run.annotation.changes():
            score_ax.axvline(ch.frame / fps, color="grey", lw=0.6, ls="--")
        band.set_yticks([top - k + 0.4 for k in range(len(rows))], rows, fontsize=8)
        band.set_xlim(0, run.annotation.duration_s)
        score_ax.set_xlim(0, run.annotation.duration_s)
        score_ax.set_ylim(0, 1.02)
        score_ax.set_ylabel("score", fontsize=8)
        band.set_title(run.video.name, fontsize=9, loc="left")
        if r == 0:
            score_ax.legend(fontsize=7, loc="lower right", ncol=3)
    axes[-1][0].set_xlabel("seconds")
    fig.legend(handles=[Patch(color=colors[label], label=label) for label in labels], loc="upper center",
               ncol=min(len(labels), 10), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def parse_policy(spec: str) -> PolicySettings:
    """'none', 'ema:ALPHA', 'vote:K' or 'hysteresis:MARGIN:HOLD', each optionally followed by
    ':min_score=X' and/or ':min_margin=X' (default: the bundle's) -> validated PolicySettings."""
    from stream.core.errors import ConfigError

    parts = spec.strip().split(":")
    kind, args = parts[0], [a for a in parts[1:] if "=" not in a]
    extra = {}
    for item in (a for a in parts[1:] if "=" in a):
        key, _, text = item.partition("=")
        if key not in ("min_score", "min_margin"):
            raise ConfigError(f"policy {spec!r}: {key!r} is not min_score or min_margin")
        try:
            extra[key] = float(text)
        except ValueError:
            raise ConfigError(f"policy {spec!r}: {key} must be a number, got {text!r}") from None
    shapes = {"none": [], "ema": [("ema_alpha", float)], "vote": [("vote_k", int)],
              "hysteresis": [("margin", float), ("hold", int)]}
    if kind not in shapes or len(args) != len(shapes[kind]):
        raise ConfigError(f"policy {spec!r}: expected none, ema:ALPHA, vote:K or hysteresis:MARGIN:HOLD")
    values = {}
    for (key, kind_of), text in zip(shapes[kind], args, strict=True):
        try:
            values[key] = kind_of(text)
        except ValueError:
            raise ConfigError(f"policy {spec!r}: {key} must be {kind_of.__name__}, got {text!r}") from None
    return PolicySettings(kind=kind, **values, **extra).validate(where=f"policy {spec!r}")


def format_table(report: dict) -> str:
    """Plain-text table of the pooled numbers, one row per policy."""
    bg = bool(report["published"].get("background_windows"))
    head = (f"{'policy':<30s} {'win acc':>7s} {'settled':>7s} {'delay mean s':>12s} {'p90 s':>6s} {'max s':>6s} "
            f"{'missed':>7s} {'flicker/min':>11s}" + (f" {'bg none':>7s} {'FA/min':>6s}" if bg else ""))
    lines = [head, "-" * len(head)]

    def row(name, p, mark=""):
        d = p["switch_delay_s"]
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        acc = "-" if p["window_accuracy"] is None else f"{p['window_accuracy']:.3f}"
        settled = "-" if p["settled_accuracy"] is None else f"{p['settled_accuracy']:.3f}"
        lines.append(f"{(name + mark):<30s} {acc:>7s} {settled:>7s} {fmt(d['mean']):>12s} {fmt(d['p90']):>6s} "
                     f"{fmt(d['max']):>6s} {p['missed_switches']:>3d}/{p['switches']:<3d} "
                     f"{p['flicker_per_min']:>11.2f}"
                     + (f" {fmt(p['background_none_rate']):>7s} {fmt(p['false_alarms_per_min']):>6s}" if bg else ""))
    row("published (as run)", report["published"])
    for name, p in report["policies"].items():
        row(name, p, " *" if name == report.get("recommended_policy") else "")
    minutes = report["published"]["minutes"]
    lines.append(f"{len(report['videos'])} video(s), {minutes:.1f} min, {report['published']['windows']} windows, "
                 f"{report['published']['switches']} annotated switches; * = recommended by the selection rule"
                 + (f"; {report['published']['background_minutes']:.1f} min background: bg none = fraction of its "
                    "windows decided none, FA/min = changes into an action per minute of it" if bg else ""))
    return "\n".join(lines)
