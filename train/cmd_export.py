"""Export a spatial and a temporal checkpoint to a model bundle the runtime loads.

Writes OUT_DIR/spatial.onnx, temporal.onnx (opset 18, dynamic batch, weights embedded),
labels.txt and bundle.toml (input size, normalisation, flow settings and length, fusion
weights, provenance: data, split, commit, commands, date). Before writing, ONNX Runtime is
checked against torch on real windows from the training extraction; export fails above
--tolerance. --quantize int8 (static QDQ, calibrated on real windows of the checkpoints' training
videos only: validation videos never calibrate) or fp16 shrinks the files; the agreement with the
fp32 model is reported and recorded.

example: twostream export runs/train/w4_spatial runs/train/w4_temporal models/default --quantize int8
"""
from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="CHECKPOINT",
                        help="spatial and temporal checkpoints (files, or run folders holding last.pt), then OUT_DIR")
    parser.add_argument("--fusion-spatial", type=float, default=1.0, help="late-fusion weight of the spatial stream")
    parser.add_argument("--fusion-temporal", type=float, default=1.5, help="late-fusion weight of the temporal stream")
    parser.add_argument("--quantize", default="none", choices=("none", "int8", "fp16"))
    parser.add_argument("--parity-data", type=Path,
                        help="extraction to draw real check/calibration windows from (default: the training one)")
    parser.add_argument("--calibration-windows", type=int, default=160, help="windows for int8 calibration")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="max abs logit difference ORT vs torch (fp32)")
    parser.add_argument("--min-agreement", type=float, default=0.9,
                        help="quantized model: minimum top-1 agreement with fp32 on the check windows")


def _resolve(path: Path) -> Path:
    if path.is_dir():
        for name in ("last.pt", "best.pt"):
            if (path / name).is_file():
                return path / name
        from stream.core.errors import ConfigError

        raise ConfigError(f"{path}: no last.pt or best.pt in this run folder")
    return path


def real_windows(extracted: Path, meta: dict, count: int, seed: int = 0, videos: list[str] | None = None):
    """(spatial, temporal) input arrays from `count` evenly spread windows of an extraction (runtime code path).

    videos: draw only from these (paths relative to the dataset, as in extract.json); default all.
    """
    import numpy as np

    from stream.core.offline import window_ends, window_inputs
    from train.extract import load_video, read_index

    index = read_index(extracted)
    if videos is None:
        entries = list(index["videos"].values())
    else:
        missing = [rel for rel in videos if rel not in index["videos"]]
        if missing:
            from stream.core.errors import ConfigError

            raise ConfigError(f"{extracted}: {len(missing)} training video(s) are not in this extraction "
                              f"(first: {missing[0]})")
        entries = [index["videos"][rel] for rel in sorted(videos)]
    rng = np.random.default_rng(seed)
    rng.shuffle(entries)
    L = meta["flow_length"]
    per_video = max(1, -(-count // max(1, len(entries))))
    spatial, temporal = [], []
    for entry in entries:
        frames, flows = load_video(extracted, entry)
        ends = window_ends(len(frames), L, per_video)
        if not ends:
            continue
        s, t = window_inputs(frames, flows, ends, flow_length=L, mean=meta["mean"], std=meta["std"],
                             stacking=index["flow"]["stacking"])
        spatial.append(s)
        temporal.append(t)
        if sum(len(x) for x in spatial) >= count:
            break
    return np.concatenate(spatial)[:count], np.concatenate(temporal)[:count]


def training_videos(meta: dict, index: dict) -> list[str]:
    """The videos (rel paths) a checkpoint was trained on, checked against the extraction `index`.

    Checkpoints record the list (meta "train_items"); older ones are re-split from the split options
    in their recorded command, and the result must reproduce the recorded description, training-video
    count and groups, else ConfigError (calibrating on unknown videos could leak held-out data).
    """
    import argparse as _argparse

    from stream.core.errors import ConfigError
    from train.datasets import Dataset, VideoItem, add_split_arguments, make_split, split_spec_from_args

    if meta.get("train_items") is not None:
        return sorted(meta["train_items"])
    parser = _argparse.ArgumentParser(add_help=False)
    add_split_arguments(parser)
    try:
        args, _ = parser.parse_known_args(shlex.split(meta.get("command", ""))[2:])
    except SystemExit:
        args = None
    if args is not None and "group_duplicates" in vars(args) and "duplicates grouped" not in meta.get("split", ""):
        args.group_duplicates = False  # trained before near-duplicate grouping existed
    items = [VideoItem(rel, int(v["label"])) for rel, v in index["videos"].items()]
    split = None
    if args is not None:
        try:
            split = make_split(Dataset(Path(index["source"]), list(index["classes"]), items),
                               split_spec_from_args(args))
        except ConfigError:
            split = None
    if (split is None or split.description != meta.get("split") or len(split.train) != int(meta.get("train_videos", -1))
            or list(split.groups.get("train", [])) != list(meta.get("train_groups", []))):
        raise ConfigError(f"cannot tell which videos the {meta.get('stream', '')} checkpoint was trained on "
                          f"(split {meta.get('split', '?')!r}); pass --parity-data with an extraction of "
                          f"training videos only")
    return sorted(it.rel for it in split.train)


def calibration_videos(extracted: Path, metas: list[dict]) -> tuple[list[str] | None, str]:
    """(videos to draw int8 calibration windows from, description for the provenance).

    From the checkpoints' own extraction: only videos every checkpoint trained on (validation
    videos never calibrate, or the held-out score would have seen them). Another extraction
    (--parity-data) is the user's calibration set: all of it, None.
    """
    from train.extract import read_index

    index = read_index(extracted)
    same = all(Path(m["extracted"]).resolve() == Path(extracted).resolve()
               or str(m.get("data")) == str(index["source"]) for m in metas)
    if not same:
        return None, f"all {len(index['videos'])} videos of {extracted} (not the training extraction)"
    chosen = set(training_videos(metas[0], index))
    for m in metas[1:]:
        chosen &= set(training_videos(m, index))
    if not chosen:
        from stream.core.errors import ConfigError

        raise ConfigError(f"{extracted}: the checkpoints share no training video to calibrate on")
    return sorted(chosen), f"{len(chosen)} training videos of {extracted} (validation videos excluded)"


def main(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from stream.core.errors import ConfigError
    from stream.core.flow import FlowSettings
    from train.cmd_train import git_commit
    from train.engine import load_checkpoint
    from train.models import build_model
    from train.onnx_export import export_bundle
    from train.quantize import compare, convert_fp16, quantize_int8

    if len(args.paths) != 3:
        raise ConfigError("expected SPATIAL_CHECKPOINT TEMPORAL_CHECKPOINT OUT_DIR")
    *ckpt_paths, out_dir = [Path(p) for p in args.paths]
    ckpts = {}
    for p in ckpt_paths:
        p = _resolve(p)
        try:
            c = load_checkpoint(p)
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
        stream = c["meta"].get("stream")
        if stream in ckpts:
            raise ConfigError(f"two {stream} checkpoints given; need one spatial and one temporal")
        ckpts[stream] = (p, c)
    if set(ckpts) != {"spatial", "temporal"}:
        raise ConfigError(f"need one spatial and one temporal checkpoint, got {sorted(ckpts)}")
    ms, mt = ckpts["spatial"][1]["meta"], ckpts["temporal"][1]["meta"]
    for key in ("classes", "input_size", "mean", "std"):
        if ms[key] != mt[key]:
            raise ConfigError(f"spatial and temporal checkpoints disagree on {key}: {ms[key]} vs {mt[key]}")
    labels = ms["classes"]
    nets = {}
    for stream, (_path, c) in ckpts.items():
        m = c["meta"]
        net = build_model(m["arch"], len(labels), in_channels=m["in_channels"], weights=None, dropout=m["dropout"])
        net.load_state_dict(c["model"])
        nets[stream] = net.eval()

    extracted = args.parity_data or Path(mt["extracted"])
    check_s = check_t = None
    if extracted.is_dir():
        check_s, _ = real_windows(extracted, ms, 16)
        _, check_t = real_windows(extracted, mt, 16)
        where = f"16 real windows from {extracted}"
    else:
        print(f"warning: {extracted} not found; parity checked on random inputs", file=sys.stderr)
        where = "random inputs"
    flow = FlowSettings(**mt["flow"])
    git = git_commit(Path(__file__).resolve().parents[1])
    provenance = {
        "data": ms["data"],
        "split_spatial": ms["split"],
        "split_temporal": mt["split"],
        "train_videos": int(mt["train_videos"]),
        "train_command_spatial": ms["command"],
        "train_command_temporal": mt["command"],
        "train_commit_spatial": ms["git_commit"],
        "train_commit_temporal": mt["git_commit"],
        "temporal_init": mt.get("init", ""),
        "flow_subtract": flow.subtract,
        "camera_motion_augmentation": bool(mt.get("camera_motion")),
        "export_command": "twostream export " + " ".join(shlex.quote(a) for a in sys.argv[2:]),
        "export_commit": git,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "quantization": args.quantize,
    }
    if mt.get("camera_motion"):
        cm = mt["camera_motion"]
        provenance["camera_motion_variants"] = int(cm.get("variants", 0))
        provenance["camera_motion_seed"] = int(cm.get("seed", 0))
        provenance["camera_motion_settings"] = ", ".join(f"{k}={v}" for k, v in cm.get("settings", {}).items())
    diffs = export_bundle(out_dir, spatial=nets["spatial"], temporal=nets["temporal"], labels=labels,
                          input_size=int(ms["input_size"]), flow_length=int(mt["flow_length"]), flow=flow,
                          mean=ms["mean"], std=ms["std"],
                          fusion_weights={"spatial": args.fusion_spatial, "temporal": args.fusion_temporal},
                          arch=f"{ms['arch']}+{mt['arch']}", provenance=provenance,
                          spatial_inputs=check_s, temporal_inputs=check_t, tolerance=args.tolerance)
    print(f"parity ONNX Runtime vs torch on {where}: spatial max |diff| {diffs['spatial']:.2e}, "
          f"temporal {diffs['temporal']:.2e} (tolerance {args.tolerance:g})")
    provenance["parity_max_abs_diff_spatial"] = diffs["spatial"]
    provenance["parity_max_abs_diff_temporal"] = diffs["temporal"]

    if args.quantize != "none":
        if not extracted.is_dir():
            raise ConfigError(f"--quantize {args.quantize} needs real windows: {extracted} not found (--parity-data)")
        cal_videos, cal_note = calibration_videos(extracted, [ms, mt])
        provenance["calibration"] = cal_note
        print(f"{args.quantize} calibration/check windows from {cal_note}")
        for stream, meta in (("spatial", ms), ("temporal", mt)):
            cal_s, cal_t = real_windows(extracted, meta, args.calibration_windows, seed=1, videos=cal_videos)
            calib = cal_s if stream == "spatial" else cal_t
            check = check_s if stream == "spatial" else check_t
            fp32 = out_dir / f"{stream}.onnx"
            tmp = out_dir / f"{stream}.{args.quantize}.onnx"
            if args.quantize == "int8":
                quantize_int8(fp32, tmp, calib)
            else:
                convert_fp16(fp32, tmp)
            probe = np.concatenate([check, calib[:48]])
            with torch.no_grad():
                ref = nets[stream](torch.from_numpy(probe)).numpy()
            result = compare(ref, tmp, probe)
            print(f"{stream} {args.quantize}: max |logit diff| vs torch {result['max_abs_diff']:.3f}, "
                  f"top-1 agreement {result['top1_agreement']:.3f} on {len(probe)} real windows")
            if result["top1_agreement"] < args.min_agreement:
                tmp.unlink()
                raise ConfigError(f"{stream} {args.quantize} model agrees with fp32 on only "
                                  f"{result['top1_agreement']:.2f} of windows (< --min-agreement {args.min_agreement})")
            tmp.replace(fp32)
            provenance[f"quant_top1_agreement_{stream}"] = result["top1_agreement"]
            provenance[f"quant_max_abs_diff_{stream}"] = result["max_abs_diff"]
    from engines.bundle import write_bundle_toml

    write_bundle_toml(out_dir, input_size=int(ms["input_size"]), mean=ms["mean"], std=ms["std"], flow=flow,
                      flow_length=int(mt["flow_length"]),
                      fusion_weights={"spatial": args.fusion_spatial, "temporal": args.fusion_temporal},
                      arch=f"{ms['arch']}+{mt['arch']}", provenance=provenance)  # now with parity/quant results
    from engines.loader import open_bundle

    loaded = open_bundle(out_dir)  # the runtime's own validation of what we wrote
    sizes = ", ".join(f"{p.name} {p.stat().st_size / 2**20:.2f} MiB"
                      for p in (loaded.bundle.spatial_file, loaded.bundle.temporal_file))
    print(f"bundle written to {out_dir}: {sizes}; labels {', '.join(labels)}")
    return 0
