"""Video-level accuracy of a model bundle of any family on a dataset: per network and fused.

Each video is scored as in the two-stream paper: up to --windows evenly spaced windows, a
softmax per network and window, averaged over windows; the fused score follows the bundle's
[fusion] (late: weighted sum of the networks; single: that network). Inputs of every kind are
made by the runtime's own code (stream.core.offline, stream.core.inputs, stream.core.flow) and run
through the bundle's ONNX engines (engines.loader.open_bundle), so these are the numbers a camera
gets. Two-stream bundles report `spatial` and `temporal` as before. DATA is a folder-per-class
dataset of videos, or an extraction made with the bundle's input size and flow settings (same
values, faster).

example: twostream eval ../shared/data/weizmann4 --model models/default --json runs/eval/default.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from train.datasets import add_split_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="dataset (DATA/<class>/<video>) or `twostream extract` output")
    parser.add_argument("--model", type=Path, required=True, nargs="+", metavar="BUNDLE_OR_CHECKPOINTS",
                        help="a model bundle directory, or the spatial and temporal checkpoints (files or run "
                             "folders); checkpoints are exported to a temporary fp32 bundle first (parity-checked, "
                             "as `twostream export` does) so they are scored through the same engines")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--confusion", type=Path, help="confusion-matrix PNG (default: next to --json)")
    parser.add_argument("--subset", default="auto", choices=("auto", "train", "val", "all"),
                        help="which videos of the split to score (auto: val if the split has one, else all)")
    parser.add_argument("--windows", type=int, default=25, help="evenly spaced windows per video")
    parser.add_argument("--max-frames", type=int, default=0, help="decode at most this many frames per video")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--batch", type=int, default=32, help="windows per engine call")
    parser.add_argument("--stride", type=int, default=5,
                        help="background videos: frames between windows when counting false alarms (as `run`)")
    add_split_arguments(parser)


def score_video(loaded, frames, flows, windows: int, batch: int = 32, timing: dict | None = None) -> tuple:
    """Mean softmax per network over evenly spaced windows: ({network: (C,)}, windows used).

    flows may be None when no network takes a flow_stack. timing, if given, accumulates engine
    seconds per network.
    """
    import time

    import numpy as np

    from stream.core.fusion import softmax
    from stream.core.offline import bundle_window_inputs, window_ends

    b = loaded.bundle
    ends = window_ends(len(frames), b.span, windows)
    if not ends:
        return {}, 0
    probs: dict[str, list] = {name: [] for name in loaded.engines}
    for i in range(0, len(ends), batch):
        inputs = bundle_window_inputs(b, frames, flows, ends[i:i + batch])
        for name, engine in loaded.engines.items():
            t0 = time.perf_counter()
            logits = engine.run(*inputs[name])
            if timing is not None:
                timing[name] = timing.get(name, 0.0) + (time.perf_counter() - t0)
            probs[name].append(softmax(logits))
    return {name: np.concatenate(p).mean(0) for name, p in probs.items()}, len(ends)


def fuse(probs: dict, fusion) -> object:
    """The bundle's fusion of per-network class probabilities (late: weighted average; single: one network)."""
    if fusion.method == "single":
        return probs[fusion.network]
    total = sum(fusion.weights[name] for name in probs)
    return sum(fusion.weights[name] * p for name, p in probs.items()) / total


def save_confusion_png(path: Path, matrix, labels: list[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    m = np.asarray(matrix)
    size = max(3.5, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(title)
    if len(labels) <= 30:
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if m[i, j] > m.max() / 2 else "black")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _export_checkpoints(checkpoints: list[Path], out: Path) -> Path:
    """Export (spatial, temporal) checkpoints with `twostream export`'s own code and defaults."""
    from train import cmd_export

    parser = argparse.ArgumentParser()
    cmd_export.configure(parser)
    code = cmd_export.main(parser.parse_args([str(checkpoints[0]), str(checkpoints[1]), str(out)]))
    if code:
        from stream.core.errors import TwostreamError

        raise TwostreamError(f"exporting {checkpoints[0]} and {checkpoints[1]} for evaluation failed")
    return out


def main(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from engines.loader import open_bundle
    from stream.core.errors import ConfigError, SourceError
    from stream.core.offline import read_video, video_flows_if_needed
    from train.datasets import Dataset, VideoItem, make_split, scan_folder_per_class, split_spec_from_args
    from train.extract import is_extracted, load_video, read_index

    if args.windows < 1:
        raise ConfigError("--windows must be >= 1")
    if len(args.model) == 2:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="twostream-eval-") as tmp:
            args.model = [_export_checkpoints(args.model, Path(tmp) / "bundle")]
            return main(args)
    if len(args.model) != 1:
        raise ConfigError("--model takes one bundle directory or two checkpoints (spatial, temporal)")
    args.model = args.model[0]
    loaded = open_bundle(args.model, threads=args.threads)
    bundle = loaded.bundle
    extracted = is_extracted(args.data)
    if extracted:
        index = read_index(args.data)
        if index["input_size"] != bundle.input_size or (bundle.needs_flow and index["flow"] != bundle.flow.as_dict()):
            raise ConfigError(f"{args.data} was extracted at size {index['input_size']} with flow {index['flow']}, "
                              f"but the bundle needs size {bundle.input_size} with flow {bundle.flow.as_dict()}; "
                              f"evaluate on the raw videos instead")
        dataset = Dataset(Path(index["source"]), index["classes"],
                          [VideoItem(rel, int(v["label"])) for rel, v in index["videos"].items()])
        if index["failed"]:
            print(f"note: {len(index['failed'])} video(s) failed extraction and are not scored")
    else:
        dataset = scan_folder_per_class(args.data)
    split = make_split(dataset, split_spec_from_args(args))
    subset = args.subset if args.subset != "auto" else ("val" if split.val else "all")
    items = {"train": split.train, "val": split.val, "all": split.train + split.val}[subset]
    if not items:
        raise ConfigError(f"split '{split.description}' has no {subset} videos")
    to_bundle = {}
    for i, name in enumerate(split.classes):
        if name not in bundle.labels:
            raise ConfigError(f"dataset class {name!r} is not a label of the bundle ({', '.join(bundle.labels)})")
        to_bundle[i] = bundle.labels.index(name)

    # "none": the runtime's default policy with the bundle's [policy] (min_score, background class). A video of an
    # action decided as none is a miss; a background video decided as none is correct; on background videos
    # every window at --stride goes through the policy and each change into an action is a false alarm.
    from stream.core.policy import PolicySettings, background_index, decide_all, gate, is_none, label_name, resolve
    from stream.quality.metrics import false_alarms_per_minute
    from train.window_scores import stride_scores, video_fps

    policy = resolve(PolicySettings(), bundle.policy)
    bg_index = background_index(policy, bundle.labels)
    decided_ok = actions_none = 0
    bg = {"videos": 0, "minutes": 0.0, "alarms": 0.0, "windows": 0, "action_windows": 0}
    source_root = Path(index["source"]) if extracted else dataset.root

    n = bundle.num_classes
    names = list(loaded.engines)
    if "fused" in names:
        raise ConfigError(f"{args.model}: a network named 'fused' cannot be evaluated (the name is the fused score)")
    confusion = {k: np.zeros((n, n), dtype=int) for k in (*names, "fused")}
    per_video, failed = [], {}
    timing: dict[str, float] = {}
    windows_run = 0
    for item in tqdm(sorted(items, key=lambda it: it.rel), desc="eval", unit="video"):
        try:
            if extracted:
                frames, flows = load_video(args.data, index["videos"][item.rel])
                if args.max_frames:
                    frames, flows = frames[:args.max_frames], flows[:args.max_frames - 1]
            else:
                frames = read_video(dataset.root / item.rel, bundle.input_size, max_frames=args.max_frames)
                flows = video_flows_if_needed(bundle, frames)
        except SourceError as exc:
            failed[item.rel] = str(exc)
            tqdm.write(f"skipped: {exc}")
            continue
        probs, used = score_video(loaded, frames, flows, args.windows, batch=max(1, args.batch), timing=timing)
        windows_run += used
        if used == 0:
            failed[item.rel] = f"only {len(frames)} frames: shorter than one window ({bundle.span + 1} frames)"
            continue
        probs["fused"] = fuse(probs, bundle.fusion)
        truth = to_bundle[item.label]
        row = {"video": item.rel, "label": bundle.labels[truth], "windows": used}
        for key, p in probs.items():
            pred = int(np.argmax(p))
            confusion[key][truth, pred] += 1
            row[key] = bundle.labels[pred]
        fused_p = np.asarray(probs["fused"])
        decided = label_name(gate(fused_p, int(np.argmax(fused_p)), policy, bg_index), bundle.labels)
        row["decided"] = decided
        if is_none(bundle.labels[truth], policy.background):
            decided_ok += decided == "none"
            scores = stride_scores(loaded, frames, flows, max(1, args.stride), batch=max(1, args.batch))
            window_names = [d.name(bundle.labels) for d in decide_all(scores, policy, bundle.labels)]
            minutes = len(frames) / video_fps(source_root / item.rel) / 60.0
            bg["videos"] += 1
            bg["minutes"] += minutes
            bg["alarms"] += false_alarms_per_minute(window_names, minutes) * minutes
            bg["windows"] += len(window_names)
            bg["action_windows"] += sum(w != "none" for w in window_names)
        else:
            decided_ok += decided == bundle.labels[truth]
            actions_none += decided == "none"
        per_video.append(row)
    if not per_video:
        raise ConfigError("no video could be scored")

    def acc(m):
        return float(np.trace(m) / max(1, m.sum()))

    per_class = {}
    for c, name in enumerate(bundle.labels):
        total = int(confusion["fused"][c].sum())
        if total:
            per_class[name] = {"videos": total, **{k: float(confusion[k][c, c] / total) for k in confusion}}
    result = {
        "videos": len(per_video),
        "family": bundle.family,
        "networks": names,
        **{k: {"accuracy": acc(m)} for k, m in confusion.items()},
        "per_class": per_class,
        "decided": {
            "policy": policy.describe() + (f" background={policy.background}" if bg_index is not None else ""),
            "accuracy": decided_ok / len(per_video), "actions_decided_none": actions_none,
            "background_videos": bg["videos"], "background_minutes": bg["minutes"],
            "false_alarms": int(round(bg["alarms"])),
            "false_alarms_per_min": bg["alarms"] / bg["minutes"] if bg["minutes"] else None,
            "background_action_window_rate": bg["action_windows"] / bg["windows"] if bg["windows"] else None,
            "stride": args.stride,
        },
        "confusion": {"labels": list(bundle.labels), **{k: v.tolist() for k, v in confusion.items()}},
        "fusion_weights": bundle.fusion_weights,
        "fusion": bundle.fusion.method,
        "windows_per_video": args.windows,
        "inference_ms_per_window": {k: 1000.0 * v / max(1, windows_run) for k, v in timing.items()},
        "engine": {"backend": loaded.backend, "threads": args.threads, "batch": args.batch},
        "model": str(args.model),
        "data": str(args.data),
        "split": split.description,
        "subset": subset,
        "failed": failed,
        "per_video": per_video,
    }
    accuracies = "  ".join(f"{k} {result[k]['accuracy']:.3f}" for k in confusion)
    engine_ms = " ".join(f"{k} {v:.2f}" for k, v in result["inference_ms_per_window"].items())
    print(f"{len(per_video)} videos ({subset} of {split.description}); {accuracies}"
          + (f"; {len(failed)} failed" if failed else "") + f"; engine ms/window {engine_ms}")
    for name, pc in per_class.items():
        print(f"  {name:>20}: {pc['videos']:3d} videos  " + "  ".join(f"{k} {pc[k]:.2f}" for k in confusion))
    d = result["decided"]
    print(f"decided with {d['policy']}: accuracy {d['accuracy']:.3f} (none is a miss on actions: "
          f"{actions_none} action video(s) decided none)"
          + (f"; background: {bg['videos']} video(s), {bg['minutes']:.2f} min, {d['false_alarms_per_min']:.2f} false "
             f"alarms/min, {d['background_action_window_rate']:.3f} of windows labelled as an action"
             if bg["minutes"] else ""))
    png = args.confusion or (args.json.with_name(args.json.stem + "_confusion.png") if args.json else None)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    if png:
        save_confusion_png(png, confusion["fused"], list(bundle.labels), f"fused, {len(per_video)} videos")
    return 0
