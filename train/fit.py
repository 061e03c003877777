"""`twostream fit`: from a folder of labelled videos to an evaluated, deployable bundle in one command.

Phases (each with a progress bar; every phase's output is kept under OUT/work, so re-running the
same command resumes where it stopped):

  1 scan       every file of DATA/<class>/ (and --background DIR, or a DATA/_background folder) is
               probed with OpenCV; non-video and undecodable files are listed, skipped and counted.
               Fewer than 2 classes, or a class with fewer than 2 readable videos, is a one-line error.
  2 split      a group regex found in the names (actorN, personN, subjectN, _gNN_) keeps each group on
               one side; otherwise a stratified random split with near-duplicate clips kept together
               (train.datasets.near_duplicate_groups). Background footage is split at random the same way.
               The readable videos are linked into OUT/work/data/<class>/g<group>__<name>, so every later
               phase runs the existing commands with one exact group split (--split group).
  3 extract    `twostream extract` (train.extract.extract_dataset).
  4 train      `twostream train` for the spatial and the temporal stream (--epochs, or as many as
               --time-budget allows, measured on a short probe run of each stream). --family other than
               late then trains its network with `twostream family train` (--family-epochs, docs/models.md's
               recipe): convfusion from the two late streams; hidden (MotionNet + temporal Lite0, from the
               late temporal stream) late-fused with the spatial stream; i3d (inflated ImageNet Lite0) alone,
               without late streams.
  5 export     `twostream export` (int8 calibrated on the training split only, or --no-quantize); other
               families `twostream family export` (the same: int8 calibrated on the training videos, a
               network whose int8 top-1 agreement with fp32 is under 0.9 ships fp32).
  6 evaluate   `twostream eval` on the validation split; then the "none" threshold: the fused scores of
               every validation window at the runtime's stride go through the default decision policy
               with candidate min_score values; the smallest one whose false alarms on the validation
               background footage are <= --target-fa per minute (the least accuracy lost) is written
               to bundle.toml [policy]. Without background footage no threshold is chosen.
  7 report     OUT/report/: summary.md (per-class table, split, timings, threshold), confusion.png,
               curves_spatial.png, curves_temporal.png, threshold.png, fit.json; a table on the terminal.

No new training, export or evaluation code here: the phases call train.cmd_extract/train/export/eval
and train.cmd_family (train, export). The "none" threshold and the report work for every family (eval and
the window scores go through the bundle's networks and [fusion]); --time-budget is for --family late only.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stream.core.errors import ConfigError, SourceError
from stream.core.policy import BACKGROUND_LABEL
from train.datasets import VIDEO_EXTENSIONS, natural_key
from train.window_scores import stride_scores, video_fps

GROUP_PATTERNS = (r"actor[_-]?(\d+)", r"person[_-]?(\d+)", r"subject[_-]?(\d+)", r"_g(\d+)_")
STAGED_REGEX = r"^g(\d+)__"  # the staged names carry the chosen group: one exact --split group for every phase
STATE_FILE = "fit.json"
THRESHOLDS = tuple(np.round(np.concatenate([[0.0], np.arange(0.30, 0.951, 0.025)]), 3))


# --- scan ----------------------------------------------------------------------------------------
@dataclass
class Scan:
    root: Path
    classes: dict[str, list[Path]]  # readable videos per class name (BACKGROUND_LABEL for background footage)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)

    @property
    def actions(self) -> list[str]:
        return [c for c in self.classes if c != BACKGROUND_LABEL]


def probe_video(path: Path) -> str:
    """'' when OpenCV decodes at least 2 frames of `path` (flow needs 2), else why not."""
    from stream.core.offline import iter_frames, open_video
    from stream.runtime.stage import quiet_stderr

    if not path.exists():
        return "missing (a broken link?)"
    try:
        with quiet_stderr():  # FFmpeg's own complaint would precede ours; ours names the file
            n = sum(1 for _ in iter_frames(open_video(path), max_frames=2))
    except SourceError:
        return "cannot be opened as a video"
    except Exception as exc:  # a corrupt file can make the decoder fail in many ways: report it, never hide it
        return f"decoder error ({type(exc).__name__})"
    if n == 0:
        return "no frame could be decoded"
    if n < 2:
        return "only 1 frame (optical flow needs 2)"
    return ""


def scan_data(data: Path, background: Path | None = None, progress: bool = True) -> Scan:
    """Readable videos per class folder (plus background footage); skipped files with the reason."""
    from tqdm import tqdm

    data = Path(data)
    if not data.is_dir():
        raise ConfigError(f"{data}: not a directory (expected DATA/<class>/<video>)")
    scan = Scan(root=data, classes={})
    candidates: list[tuple[str, Path]] = []
    for entry in sorted(data.iterdir(), key=lambda p: natural_key(p.name)):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            scan.skipped.append((str(entry), "not inside a class folder"))
            continue
        scan.classes.setdefault(entry.name, [])
        for f in sorted(entry.iterdir(), key=lambda p: natural_key(p.name)):
            if f.name.startswith("."):
                continue
            if f.is_dir():
                scan.skipped.append((str(f), "a folder inside a class folder (not scanned)"))
            elif f.suffix.lower() not in VIDEO_EXTENSIONS:
                scan.skipped.append((str(f), "not a video file (by its extension)"))
            else:
                candidates.append((entry.name, f))
    if background is not None:
        background = Path(background)
        if not background.is_dir():
            raise ConfigError(f"--background {background}: not a directory of videos")
        scan.classes.setdefault(BACKGROUND_LABEL, [])
        for f in sorted(background.rglob("*"), key=lambda p: natural_key(str(p))):
            if f.is_file() and not f.name.startswith("."):
                if f.suffix.lower() in VIDEO_EXTENSIONS:
                    candidates.append((BACKGROUND_LABEL, f))
                else:
                    scan.skipped.append((str(f), "not a video file (by its extension)"))
    for cls, f in tqdm(candidates, desc="scan", unit="file", disable=not progress):
        why = probe_video(f)
        if why:
            scan.skipped.append((str(f), why))
        else:
            scan.classes[cls].append(f)
    check_scan(scan)
    return scan


def check_scan(scan: Scan) -> None:
    """One-line errors for data fit cannot learn from."""
    actions = scan.actions
    if len(actions) < 2:
        found = ", ".join(actions) if actions else "none"
        raise ConfigError(f"{scan.root}: {len(actions)} class folder(s) ({found}); fit needs at least 2 classes, "
                          f"a folder of videos per class ({scan.root}/<class>/<video>)")
    few = [(c, len(v)) for c, v in scan.classes.items() if len(v) < 2]
    if few:
        listed = ", ".join(f"{c} ({n})" for c, n in few)
        skipped = f"; {len(scan.skipped)} file(s) skipped, see the list above" if scan.skipped else ""
        raise ConfigError(f"{scan.root}: class(es) with fewer than 2 readable videos: {listed}; every class needs "
                          f"at least 2 (one to train on, one to validate){skipped}")


# --- split ---------------------------------------------------------------------------------------
@dataclass
class FitSplit:
    items: list[tuple[str, Path, int]]  # (class, video, group id)
    val_groups: list[int]
    description: str

    def staged(self) -> list[tuple[str, Path, int, str]]:
        """(class, video, group, staged file name): g<group>__<name>, made unique within its class folder."""
        out, seen = [], set()
        for cls, video, gid in self.items:
            name, k = f"g{gid:04d}__{video.name}", 1
            while (cls, name) in seen:
                name, k = f"g{gid:04d}__{video.stem}_{k}{video.suffix}", k + 1
            seen.add((cls, name))
            out.append((cls, video, gid, name))
        return out


def detect_group_regex(names: list[str]) -> str | None:
    """The first common group pattern that matches every name and finds at least 2 groups."""
    for pattern in GROUP_PATTERNS:
        rx = re.compile(pattern, re.IGNORECASE)
        found = [rx.search(n) for n in names]
        if all(found) and len({m.group(1).lstrip("0") for m in found}) >= 2:
            return pattern
    return None


def choose_split(scan: Scan, *, group_regex: str = "auto", val_fraction: float = 0.25, seed: int = 0,
                 group_duplicates: bool = True) -> FitSplit:
    """Group split when the names carry a group (actor, person, ...), else stratified random with
    near-duplicates kept together; background footage always the random way."""
    import random

    from train.datasets import VideoItem, near_duplicate_groups, random_split

    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"--val-fraction {val_fraction}: expected a number between 0 and 1")
    actions = [(c, v) for c in scan.actions for v in scan.classes[c]]
    background = [(BACKGROUND_LABEL, v) for v in scan.classes.get(BACKGROUND_LABEL, [])]
    regex = detect_group_regex([v.name for _, v in actions]) if group_regex == "auto" else (group_regex or None)
    items: list[tuple[str, Path, int]] = []
    val_groups: list[int] = []
    parts = []
    if regex:
        try:
            rx = re.compile(regex, re.IGNORECASE)
        except re.error as exc:
            raise ConfigError(f"--group-regex {regex!r}: not a valid regular expression ({exc})") from None
        keys = []
        for _, v in actions:
            m = rx.search(v.name)
            if not m:
                raise ConfigError(f"--group-regex {regex!r} does not match {v}")
            keys.append((m.group(1) if m.groups() else m.group(0)).lstrip("0") or "0")
        groups = sorted(set(keys), key=natural_key)
        if len(groups) < 2:
            raise ConfigError(f"--group-regex {regex!r} finds only 1 group; cannot keep groups apart")
        gid = {g: i + 1 for i, g in enumerate(groups)}
        shuffled = list(groups)
        random.Random(seed).shuffle(shuffled)
        n_val = min(len(groups) - 1, max(1, round(val_fraction * len(groups))))
        val = set(shuffled[:n_val])
        items += [(c, v, gid[k]) for (c, v), k in zip(actions, keys, strict=True)]
        val_groups += [gid[g] for g in groups if g in val]
        parts.append(f"group split on {regex!r}: {len(groups)} groups, validation groups "
                     f"{', '.join(sorted(val, key=natural_key))}")
        rest = []
    else:
        rest = actions
    rest = rest + background
    if rest:
        offset = max([g for _, _, g in items], default=0) + 1
        classes = sorted({c for c, _ in rest})
        vitems = [VideoItem(f"{c}/{i}", classes.index(c)) for i, (c, _) in enumerate(rest)]
        dup = near_duplicate_groups([v for _, v in rest]) if group_duplicates else list(range(len(rest)))
        _, val_items = random_split(vitems, val_fraction, seed, groups=dup)
        val_index = {int(it.rel.split("/")[1]) for it in val_items}
        for i, (c, v) in enumerate(rest):
            g = offset + dup[i]
            items.append((c, v, g))
            if i in val_index and g not in val_groups:
                val_groups.append(g)
        joined = len(rest) - len(set(dup))
        what = "background footage" if not (set(classes) - {BACKGROUND_LABEL}) else "videos"
        parts.append(f"stratified random split of {len(rest)} {what} (val_fraction={val_fraction}, seed={seed}"
                     + (f", {joined} near-duplicate clip(s) kept with their original" if joined else "") + ")")
    val_set = set(val_groups)
    for cls in scan.classes:
        sides = {g in val_set for c, _, g in items if c == cls}
        if sides != {True, False}:
            side = "validation" if True in sides else "training"
            raise ConfigError(f"the split puts every video of class {cls!r} on the {side} side; add videos or "
                              f"groups to it, or choose --group-regex/--val-fraction")
    return FitSplit(items=items, val_groups=sorted(val_set), description="; ".join(parts))


def stage(split: FitSplit, work: Path) -> Path:
    """Link every readable video into work/data/<class>/g<group>__<name> (rebuilt each run; links only)."""
    root = work / "data"
    if root.exists():
        shutil.rmtree(root)
    for cls, video, _, name in split.staged():
        (root / cls).mkdir(parents=True, exist_ok=True)
        os.symlink(video.resolve(), root / cls / name)
    return root


# --- running the existing commands ---------------------------------------------------------------
def run_command(name: str, module, argv: list[str], log: Path) -> int:
    """`twostream NAME ARGV` in this process: the command's own parser and main(), its stdout going to `log`.

    sys.argv is set to that command line for the duration, so what the command records as its
    command (checkpoint meta, bundle provenance) is the exact command that reproduces it."""
    import shlex

    parser = argparse.ArgumentParser(prog=f"twostream {name}")
    module.configure(parser)
    args = parser.parse_args(argv)
    log.parent.mkdir(parents=True, exist_ok=True)
    saved = sys.argv
    sys.argv = ["twostream", name, *argv]
    try:
        with open(log, "a", encoding="utf-8") as out, contextlib.redirect_stdout(out):
            print(f"$ twostream {name} {' '.join(shlex.quote(a) for a in argv)}", flush=True)
            return int(module.main(args) or 0)
    finally:
        sys.argv = saved


def split_argv(split: FitSplit) -> list[str]:
    return ["--split", "group", "--group-regex", STAGED_REGEX,
            "--val-groups", ",".join(f"{g:04d}" for g in split.val_groups)]


def family_runs(family: str) -> tuple[str, ...]:
    """The training runs (folders under OUT/work) a fit of `family` makes, in order; the last one is exported
    (late: both streams)."""
    return {"late": ("spatial", "temporal"), "convfusion": ("spatial", "temporal", "convfusion"),
            "hidden": ("spatial", "temporal", "hidden"), "i3d": ("i3d",)}[family]


def finished_epochs(run_dir: Path) -> int:
    """Epochs recorded in a training run's log.csv (0 if none)."""
    log = run_dir / "log.csv"
    if not log.is_file():
        return 0
    return max(0, len([line for line in log.read_text().splitlines() if line.strip()]) - 1)


def _watch_epochs(run_dir: Path, bar, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        n = finished_epochs(run_dir)
        if n > bar.n:
            bar.update(n - bar.n)
            rows = (run_dir / "log.csv").read_text().splitlines()
            last = dict(zip(rows[0].split(","), rows[-1].split(","), strict=False))
            bar.set_postfix(loss=last.get("train_loss"), val_acc=last.get("val_acc"))


def train_stream(stream: str, *, extracted: Path, run_dir: Path, split: FitSplit, epochs: int, opts: dict,
                 progress: bool, max_steps: int = 0, log: Path) -> None:
    """`twostream train` one stream for `epochs` (resuming its last.pt), with an epoch bar and ETA."""
    from train import cmd_train

    done = finished_epochs(run_dir)
    if done >= epochs and (run_dir / "last.pt").is_file():
        print(f"  {stream}: {done} epochs already trained ({run_dir})")
        return
    argv = [str(extracted), "--stream", stream, "--out", str(run_dir), "--epochs", str(epochs),
            "--batch-size", str(opts["batch_size"]), "--arch", opts["arch"], "--flow-length", str(opts["flow_length"]),
            "--seed", str(opts["seed"]), "--no-progress", *split_argv(split)]
    if opts["cache"]:
        argv.append("--cache")
    if max_steps:
        argv += ["--max-steps", str(max_steps)]
    if done and (run_dir / "last.pt").is_file():
        argv += ["--resume", str(run_dir / "last.pt")]
    code = _with_epoch_bar(f"train {stream}", run_dir, epochs, done, progress,
                           lambda: run_command("train", cmd_train, argv, log))
    if code:
        raise ConfigError(f"training the {stream} stream failed (see {log})")


def _with_epoch_bar(desc: str, run_dir: Path, epochs: int, done: int, progress: bool, run) -> int:
    """run() (a training command) with an epoch bar that follows run_dir/log.csv."""
    from tqdm import tqdm

    bar = tqdm(total=epochs, initial=min(done, epochs), desc=desc, unit="epoch", disable=not progress)
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_epochs, args=(run_dir, bar, stop), daemon=True)
    watcher.start()
    try:
        return run()
    finally:
        stop.set()
        watcher.join()
        bar.update(max(0, finished_epochs(run_dir) - bar.n))
        bar.close()


def train_family_network(family: str, *, extracted: Path, work: Path, split: FitSplit, opts: dict, progress: bool,
                         log: Path) -> None:
    """`twostream family train FAMILY` for --family-epochs (hidden: twice as many MotionNet epochs before), from the
    late streams in work/ where the family starts from them. A family run does not resume mid-way: an
    interrupted one is trained again from its start."""
    from train import cmd_family

    run_dir = work / family
    epochs = int(opts["family_epochs"])
    done = finished_epochs(run_dir)
    if done >= epochs and (run_dir / "last.pt").is_file():
        print(f"  {family}: {done} epochs already trained ({run_dir})")
        return
    argv = ["train", family, str(extracted), "--out", str(run_dir), "--epochs", str(epochs),
            "--batch-size", str(opts["batch_size"]), "--seed", str(opts["seed"]), *split_argv(split)]
    if family == "convfusion":
        argv += ["--spatial-init", str(work / "spatial" / "last.pt"), "--temporal-init",
                 str(work / "temporal" / "last.pt"), "--flow-length", str(opts["flow_length"])]
    elif family == "hidden":
        argv += ["--temporal-init", str(work / "temporal" / "last.pt"), "--flow-length", str(opts["flow_length"]),
                 "--motion-epochs", str(2 * epochs)]  # unsupervised MotionNet first: the zoo's 30 for 15
    code = _with_epoch_bar(f"train {family}", run_dir, epochs, 0, progress,
                           lambda: run_command("family", cmd_family, argv, log))
    if code:
        raise ConfigError(f"training the {family} network failed (see {log})")


def probe_epoch_seconds(stream: str, *, extracted: Path, work: Path, split: FitSplit, opts: dict,
                        train_videos: int, val_videos: int, log: Path) -> float:
    """Seconds one epoch of `stream` takes here: a 3-batch probe run, scaled (includes start-up: an over-estimate)."""
    probe = work / f"probe_{stream}"
    shutil.rmtree(probe, ignore_errors=True)
    t0 = time.perf_counter()
    train_stream(stream, extracted=extracted, run_dir=probe, split=split, epochs=1, opts=opts, progress=False,
                 max_steps=3, log=log)
    seconds = time.perf_counter() - t0
    shutil.rmtree(probe, ignore_errors=True)
    batches = max(1, -(-train_videos // opts["batch_size"]))
    val_batches = -(-val_videos // opts["batch_size"])
    per_batch = seconds / min(3, batches)
    return per_batch * (batches + 0.4 * val_batches)  # a validation batch is forward only (~0.4 of a step)


def parse_duration(text: str) -> float:
    """'10m', '90s', '1.5h' or plain seconds -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text or "")
    if not m:
        raise ConfigError(f"--time-budget {text!r}: expected e.g. 10m, 600s or 1.5h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


# --- threshold -----------------------------------------------------------------------------------
def threshold_table(action: list[tuple[np.ndarray, str]], background: list[tuple[np.ndarray, float]],
                    labels: tuple[str, ...], kind: str = "ema", thresholds=THRESHOLDS) -> list[dict]:
    """For each candidate min_score: window accuracy on the action videos ("none" = a miss), and false
    alarms per minute and the action-window rate on the background footage, under the default policy."""
    from stream.core.policy import PolicySettings, decide_all
    from stream.quality.metrics import false_alarms_per_minute

    rows = []
    for t in thresholds:
        settings = PolicySettings(kind=kind, min_score=float(t), min_margin=0.0, background=BACKGROUND_LABEL)
        correct = total = 0
        for scores, truth in action:
            names = [d.name(labels) for d in decide_all(scores, settings, labels)]
            correct += sum(n == truth for n in names)
            total += len(names)
        alarms = minutes = bg_action = bg_windows = 0.0
        for scores, mins in background:
            names = [d.name(labels) for d in decide_all(scores, settings, labels)]
            alarms += false_alarms_per_minute(names, mins) * mins
            minutes += mins
            bg_action += sum(n != "none" for n in names)
            bg_windows += len(names)
        rows.append({"min_score": float(t), "accuracy": correct / total if total else None,
                     "false_alarms_per_min": alarms / minutes if minutes else None,
                     "background_action_rate": bg_action / bg_windows if bg_windows else None})
    return rows


def pick_threshold(rows: list[dict], target_fa: float) -> tuple[dict, bool]:
    """The smallest min_score meeting the false-alarm target (accuracy only falls as it rises); else the
    one with the fewest false alarms. Returns (row, target met)."""
    ok = [r for r in rows if r["false_alarms_per_min"] is not None and r["false_alarms_per_min"] <= target_fa]
    if ok:
        return min(ok, key=lambda r: r["min_score"]), True
    return min(rows, key=lambda r: (r["false_alarms_per_min"], r["min_score"])), False


def write_policy(bundle_dir: Path, policy: dict) -> None:
    """Set bundle.toml's [policy] table (replacing one written before), then re-validate the bundle."""
    from engines.bundle import read_bundle

    path = bundle_dir / "bundle.toml"
    lines = path.read_text(encoding="utf-8").splitlines()
    out, skipping = [], False
    for line in lines:
        header = line.strip().startswith("[")
        if header:
            skipping = line.strip() == "[policy]"
        if not skipping:
            out.append(line)
    while out and not out[-1].strip():
        out.pop()
    if policy:
        out += ["", "[policy]", "# the bundle's default decision, chosen by `twostream fit` (see report/summary.md)"]
        for k, v in policy.items():
            out.append(f"{k} = {json.dumps(v)}")
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    read_bundle(bundle_dir)  # what we wrote must load


def plot_threshold(rows: list[dict], chosen: float, target_fa: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["min_score"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if rows[0]["accuracy"] is not None:
        ax.plot(t, [r["accuracy"] for r in rows], color="tab:blue", label="window accuracy (actions)")
    ax.set_xlabel("min_score"), ax.set_ylabel("accuracy"), ax.set_ylim(0, 1.02)
    ax2 = ax.twinx()
    if rows[0]["false_alarms_per_min"] is not None:
        ax2.plot(t, [r["false_alarms_per_min"] for r in rows], color="tab:red", label="false alarms / min (background)")
        ax2.axhline(target_fa, color="tab:red", ls=":", lw=0.8)
    ax2.set_ylabel("false alarms per minute")
    ax.axvline(chosen, color="black", ls="--", lw=0.8)
    fig.legend(loc="upper center", fontsize=7, ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- the command ---------------------------------------------------------------------------------
FINGERPRINT_KEYS = ("data", "background", "arch", "epochs", "time_budget", "size", "flow_length", "flow_subtract",
                    "val_fraction", "seed", "group_regex", "quantize", "max_frames", "batch_size", "stride",
                    "target_fa")


def fingerprint(opts: dict) -> str:
    keys = {k: opts[k] for k in FINGERPRINT_KEYS}
    if opts.get("family", "late") != "late":  # a late fit keeps the fingerprint it had before --family existed
        keys.update(family=opts["family"], family_epochs=opts["family_epochs"])
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


def load_state(work: Path) -> dict:
    path = work / STATE_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {}


def save_state(work: Path, state: dict) -> None:
    work.mkdir(parents=True, exist_ok=True)
    tmp = work / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, work / STATE_FILE)


def fit(opts: dict, *, progress: bool = True) -> dict:
    """Run (or resume) every phase; returns the summary written to OUT/report/fit.json."""
    from tqdm import tqdm

    from stream.core.flow import FlowSettings
    from train import cmd_eval, cmd_export, cmd_family
    from train.extract import extract_dataset

    t_start = time.perf_counter()
    family = opts.get("family", "late")
    runs = family_runs(family)
    out = Path(opts["out"])
    work = out / "work"
    state = load_state(work)
    if state and state.get("fingerprint") != fingerprint(opts):
        raise ConfigError(f"{out} holds a fit made with other arguments ({state.get('command', '?')}); use another "
                          f"--out, or add --resume to continue that fit with its own arguments")
    state.update(fingerprint=fingerprint(opts), options=opts, command=opts.get("command", ""))
    state.setdefault("seconds", {})
    save_state(work, state)
    timings = state["seconds"]

    def phase(name: str, t0: float) -> None:
        timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - t0, 1)
        save_state(work, state)

    # 1 scan, 2 split ------------------------------------------------------------------------------
    t0 = time.perf_counter()
    print(f"[1/7] scan {opts['data']}" + (f" + background {opts['background']}" if opts["background"] else ""))
    scan = scan_data(Path(opts["data"]), Path(opts["background"]) if opts["background"] else None, progress)
    for path, why in scan.skipped:
        print(f"  skipped: {path}: {why}")
    counts = {c: len(v) for c, v in scan.classes.items()}
    print(f"  {sum(counts.values())} readable videos in {len(counts)} classes; {len(scan.skipped)} file(s) skipped")
    print("[2/7] split")
    split = choose_split(scan, group_regex=opts["group_regex"], val_fraction=opts["val_fraction"], seed=opts["seed"])
    data = stage(split, work)
    val = set(split.val_groups)
    n_val = sum(1 for *_, g in split.items if g in val)
    print(f"  {split.description}\n  {len(split.items) - n_val} training / {n_val} validation videos")
    phase("scan+split", t0)

    # 3 extract -----------------------------------------------------------------------------------
    t0 = time.perf_counter()
    print("[3/7] extract frames and optical flow")
    flow = FlowSettings(subtract=opts["flow_subtract"]).validate(where="--flow-subtract")
    extracted = work / "extract"
    index = extract_dataset(data, extracted, size=opts["size"], flow=flow, max_frames=opts["max_frames"],
                            workers=opts["workers"], progress=progress)
    if index["failed"]:
        for rel, err in index["failed"].items():
            print(f"  extraction failed: {rel}: {err}")
        raise ConfigError(f"{len(index['failed'])} video(s) could not be extracted although they decoded in the "
                          f"scan (first: {next(iter(index['failed']))}); remove them from {opts['data']}")
    phase("extract", t0)

    # 4 train ---------------------------------------------------------------------------------------
    frames_total = sum(v["frames"] for v in index["videos"].values())
    opts_train = dict(opts, cache=frames_total * opts["size"] ** 2 * 5 < 4 * 2 ** 30)  # frames+flows in RAM < 4 GiB
    log = work / "log.txt"
    n_train = len(split.items) - n_val
    epochs = state.get("epochs")
    if epochs is None:
        epochs = opts["epochs"]
        if opts["time_budget"]:
            t0 = time.perf_counter()
            print("[4/7] time budget: measuring one training step of each stream")
            per_epoch = sum(probe_epoch_seconds(s, extracted=extracted, work=work, split=split, opts=opts_train,
                                                train_videos=n_train, val_videos=n_val, log=log)
                            for s in ("spatial", "temporal"))
            phase("probe", t0)
            used = time.perf_counter() - t_start + sum(v for k, v in timings.items() if k not in ("scan+split",
                                                                                                   "extract", "probe"))
            left = opts["time_budget"] - used - 60.0 - 0.05 * opts["time_budget"]  # export, eval, report
            epochs = int(max(1, min(opts["epochs"], left // per_epoch)))
            print(f"  ~{per_epoch:.0f} s per epoch of both streams, {max(0, left):.0f} s left: {epochs} epochs")
        state["epochs"] = epochs
        save_state(work, state)
    if "spatial" in runs:
        print(f"[4/7] train spatial and temporal streams ({opts['arch']}, {epochs} epochs)")
    for stream in ("spatial", "temporal") if "spatial" in runs else ():
        t0 = time.perf_counter()
        train_stream(stream, extracted=extracted, run_dir=work / stream, split=split, epochs=epochs, opts=opts_train,
                     progress=progress, log=log)
        phase(f"train {stream}", t0)
    if family != "late":
        t0 = time.perf_counter()
        print(f"[4/7] train the {family} network ({opts['family_epochs']} epochs"
              + (" after as many MotionNet epochs, from the temporal stream" if family == "hidden" else
                 ", from the spatial and temporal streams" if family == "convfusion" else "") + ")")
        train_family_network(family, extracted=extracted, work=work, split=split, opts=opts, progress=progress,
                             log=log)
        phase(f"train {family}", t0)

    # 5 export ----------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    quant = "none" if opts["quantize"] == "none" else "int8"
    stamp = [os.stat(work / s / "last.pt").st_mtime_ns for s in runs]
    if state.get("exported") != stamp or not (out / "bundle.toml").is_file():
        print(f"[5/7] export (ONNX, {'int8 calibrated on the training split' if quant == 'int8' else 'fp32'})")
        bar = tqdm(total=1, desc="export", unit="bundle", disable=not progress)
        if family != "late":  # a network whose int8 disagrees with fp32 too often ships fp32 (family export)
            argv = ["export", str(work / family), str(out), "--quantize", quant]
            if family == "hidden":
                argv += ["--spatial", str(work / "spatial" / "last.pt")]
            code = run_command("family", cmd_family, argv, log)
            quant = exported_precision(out) if not code else quant
        else:
            argv = [str(work / "spatial"), str(work / "temporal"), str(out)]
            try:
                code = run_command("export", cmd_export, [*argv, "--quantize", quant], log)
            except ConfigError as exc:  # int8 that disagrees with fp32 too often is refused: ship fp32 instead
                if quant != "int8" or "agrees with fp32" not in str(exc):
                    raise
                print(f"  int8 refused ({exc}); exporting fp32 instead")
                quant = "none"
                code = run_command("export", cmd_export, [*argv, "--quantize", quant], log)
        state["quantized"] = quant
        bar.update(1)
        bar.close()
        if code:
            raise ConfigError(f"export failed (see {log})")
        state["exported"] = stamp
        state.pop("evaluated", None)
        phase("export", t0)
    else:
        print("[5/7] export: done before")

    # 6 evaluate + threshold ----------------------------------------------------------------------------
    t0 = time.perf_counter()
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    print("[6/7] evaluate on the validation split")
    if state.get("evaluated") != stamp or not (report / "eval.json").is_file():
        code = run_command("eval", cmd_eval, [str(extracted), "--model", str(out), *split_argv(split), "--json",
                                              str(report / "eval.json"), "--confusion", str(report / "confusion.png")],
                           log)
        if code:
            raise ConfigError(f"evaluation failed (see {log})")
        state["evaluated"] = stamp
        save_state(work, state)
    evaluation = json.loads((report / "eval.json").read_text())
    threshold = choose_threshold(out, extracted, index, split, opts, report, progress)
    phase("evaluate", t0)

    # 7 report ------------------------------------------------------------------------------------------
    print("[7/7] report")
    for run in runs:
        if (work / run / "curves.png").is_file():
            shutil.copy(work / run / "curves.png", report / f"curves_{run}.png")
    networks = list(evaluation.get("networks", ("spatial", "temporal")))
    summary = {
        "bundle": str(out), "command": opts.get("command", ""), "data": opts["data"], "background": opts["background"],
        "classes": counts, "skipped": [{"file": p, "why": w} for p, w in scan.skipped], "split": split.description,
        "train_videos": n_train, "val_videos": n_val, "epochs": epochs, "arch": opts["arch"],
        "quantize": state.get("quantized", quant), "family": family, "networks": networks,
        "evaluation": {k: evaluation[k] for k in ("videos", *networks, "fused", "per_class")},
        "decided": evaluation.get("decided"), "threshold": threshold,
        "training": {s: _last_row(work / s) for s in runs},
        "seconds": dict(timings), "wall_seconds_this_run": round(time.perf_counter() - t_start, 1),
    }
    if family != "late":
        summary["family_epochs"] = opts["family_epochs"]
    (report / "fit.json").write_text(json.dumps(summary, indent=1))
    (report / "summary.md").write_text(markdown_summary(summary), encoding="utf-8")
    print(terminal_table(summary))
    return summary


def choose_threshold(out: Path, extracted: Path, index: dict, split: FitSplit, opts: dict, report: Path,
                     progress: bool) -> dict:
    """Score every validation window at the runtime stride, pick min_score, write bundle.toml [policy]."""
    from tqdm import tqdm

    from engines.loader import open_bundle
    from train.extract import load_video

    loaded = open_bundle(out, threads=2)
    labels = loaded.bundle.labels
    val = set(split.val_groups)
    staged = {f"{c}/{name}": (c, v) for c, v, g, name in split.staged() if g in val}
    action, background = [], []
    for rel, (cls, video) in tqdm(sorted(staged.items()), desc="threshold", unit="video", disable=not progress):
        frames, flows = load_video(extracted, index["videos"][rel])
        scores = stride_scores(loaded, frames, flows, opts["stride"])
        if not len(scores):
            continue
        if cls == BACKGROUND_LABEL:
            background.append((scores, len(frames) / video_fps(video) / 60.0))
        else:
            action.append((scores, cls))
    rows = threshold_table(action, background, labels)
    has_bg = BACKGROUND_LABEL in labels
    if not background:
        write_policy(out, {"background": BACKGROUND_LABEL} if has_bg else {})
        return {"min_score": 0.0, "chosen": False, "why": "no background footage in the validation split "
                "(add a _background class folder or --background DIR): no threshold chosen", "table": rows}
    chosen, met = pick_threshold(rows, opts["target_fa"])
    policy = {"min_score": chosen["min_score"]}
    if has_bg:
        policy["background"] = BACKGROUND_LABEL
    write_policy(out, policy)
    plot_threshold(rows, chosen["min_score"], opts["target_fa"], report / "threshold.png")
    bg_minutes = sum(m for _, m in background)
    why = (f"smallest min_score with <= {opts['target_fa']:g} false alarms/min on {bg_minutes:.2f} min of validation "
           f"background footage" if met else f"no min_score reaches {opts['target_fa']:g} false alarms/min; the one "
           "with the fewest was taken")
    return {"min_score": chosen["min_score"], "chosen": True, "target_met": met, "why": why,
            "at_zero": rows[0], "at_chosen": chosen, "background_minutes": bg_minutes, "table": rows,
            "stride": opts["stride"], "policy": "ema(alpha=0.5) (the runtime default)"}


def exported_precision(bundle_dir: Path) -> str:
    """'int8' when every network of a family bundle shipped int8, 'none' when all fp32, else per network
    ('spatial int8, hidden fp32'), from its [provenance] networks (family export's report)."""
    from engines.bundle import read_bundle

    nets = json.loads(str(read_bundle(bundle_dir).provenance.get("networks", "[]")))
    kinds = {n["precision"] for n in nets}
    if kinds == {"int8"}:
        return "int8"
    if kinds == {"fp32"} or not kinds:
        return "none"
    return ", ".join(f"{n['name']} {n['precision']}" for n in nets)


def _last_row(run_dir: Path) -> dict:
    log = run_dir / "log.csv"
    if not log.is_file():
        return {}
    rows = log.read_text().splitlines()
    return dict(zip(rows[0].split(","), rows[-1].split(","), strict=False))


def _pct(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def score_columns(summary: dict) -> list[str]:
    """The bundle's networks, then fused (late: spatial, temporal, fused)."""
    return [*summary.get("networks", ("spatial", "temporal")), "fused"]


def per_class_rows(summary: dict) -> list[tuple]:
    ev = summary["evaluation"]
    cols = score_columns(summary)
    return [(name, pc["videos"], *(pc[c] for c in cols)) for name, pc in ev["per_class"].items()]


def markdown_summary(s: dict) -> str:
    ev, th = s["evaluation"], s["threshold"]
    lines = [f"# twostream fit: {s['bundle']}", "", f"`{s['command']}`", "",
             "## Data", "", f"- {s['data']}" + (f" + background {s['background']}" if s["background"] else ""),
             "- classes: " + ", ".join(f"{c} ({n})" for c, n in s["classes"].items()),
             f"- skipped files: {len(s['skipped'])}"]
    lines += [f"  - {x['file']}: {x['why']}" for x in s["skipped"][:50]]
    lines += [f"- split: {s['split']}", f"- {s['train_videos']} training / {s['val_videos']} validation videos", "",
              "## Training", ""]
    family = s.get("family", "late")
    late = f"{s['arch']} both streams, {s['epochs']} epochs"
    if family == "late":
        lines.append(f"{late}, export {s['quantize']}.")
    else:
        lines.append(f"family {family}: " + (f"{late}, then " if "spatial" in s["training"] else "")
                     + f"the {family} network {s['family_epochs']} epochs, export {s['quantize']}.")
    lines += ["", "| stream | train loss | train acc | val acc |", "|---|---:|---:|---:|"]
    for stream, row in s["training"].items():
        cells = [row.get(key, "-") for key in ("train_loss", "train_acc", "val_acc")]
        lines.append(f"| {stream} | " + " | ".join(str(c) for c in cells) + " |")
    cols = score_columns(s)
    lines += ["", " ".join(f"![{run}](curves_{run}.png)" for run in s["training"]), "",
              f"## Validation ({ev['videos']} videos, video level, through the exported bundle)", "",
              ", ".join(f"{c} {_pct(ev[c]['accuracy'])}" for c in cols), "",
              "| class | videos | " + " | ".join(cols) + " |", "|---|---:|" + "---:|" * len(cols)]
    lines += [f"| {n} | {v} | " + " | ".join(f"{a:.2f}" for a in accs) + " |" for n, v, *accs in per_class_rows(s)]
    lines += ["", "![confusion](confusion.png)", "", "## Decision threshold (\"none\")", "", th["why"] + "."]
    if th.get("chosen"):
        z, c = th["at_zero"], th["at_chosen"]
        lines += ["", f"Written to bundle.toml `[policy] min_score = {th['min_score']:g}`; windows every "
                  f"{th['stride']} frames, policy {th['policy']}.", "",
                  "| min_score | window accuracy (actions) | false alarms / min (background) | background windows "
                  "labelled as an action |", "|---:|---:|---:|---:|",
                  f"| 0 | {_pct(z['accuracy'])} | {_pct(z['false_alarms_per_min'])} | "
                  f"{_pct(z['background_action_rate'])} |",
                  f"| {c['min_score']:g} | {_pct(c['accuracy'])} | {_pct(c['false_alarms_per_min'])} | "
                  f"{_pct(c['background_action_rate'])} |", "", "![threshold](threshold.png)",
                  "", "The threshold is chosen and measured on the same validation footage: measure false alarms "
                  "on other held-out footage before relying on them."]
    lines += ["", "## Time (seconds)", "", "| phase | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in s["seconds"].items()]
    return "\n".join(lines) + "\n"


def terminal_table(s: dict) -> str:
    ev, th = s["evaluation"], s["threshold"]
    cols = score_columns(s)
    w = [max(8, len(c)) for c in cols]
    head = f"{'class':<20s} {'videos':>6s} " + " ".join(f"{c:>{k}s}" for c, k in zip(cols, w, strict=True))
    lines = ["", head, "-" * len(head)]
    lines += [f"{n:<20s} {v:>6d} " + " ".join(f"{a:>{k}.2f}" for a, k in zip(accs, w, strict=True))
              for n, v, *accs in per_class_rows(s)]
    lines += ["-" * len(head), f"{'all':<20s} {ev['videos']:>6d} "
              + " ".join(f"{ev[c]['accuracy']:>{k}.3f}" for c, k in zip(cols, w, strict=True)), ""]
    if th.get("chosen"):
        c = th["at_chosen"]
        lines.append(f"none threshold: min_score = {th['min_score']:g} (window accuracy {_pct(c['accuracy'])}, "
                     f"{_pct(c['false_alarms_per_min'])} false alarms/min on validation background footage)")
    else:
        lines.append(f"none threshold: {th['why']}")
    total = sum(s["seconds"].values())
    lines.append(f"bundle: {s['bundle']}   report: {Path(s['bundle']) / 'report' / 'summary.md'}   "
                 f"time: {total / 60:.1f} min")
    return "\n".join(lines)
