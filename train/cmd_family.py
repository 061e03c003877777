"""Train, export, evaluate and measure the other families of issue 13: convfusion, hidden, i3d, r2plus1d.

  twostream family train FAMILY EXTRACTED --out RUN [split options] [--spatial-init/--temporal-init CKPT]
  twostream family export RUN OUT_DIR [--spatial SPATIAL_RUN] [--quantize int8]   (bundle format 2)
  twostream family export-late SPATIAL_RUN TEMPORAL_RUN OUT_DIR                     (today's streams, format 2)
  twostream family eval BUNDLE EXTRACTED [split options] --json FILE                (clip accuracy, ONNX)
  twostream family bench (--run RUN | --family NAME) --json FILE                    (params, GFLOPs, ORT ms)
  twostream family motion-eval RUN EXTRACTED [split options] --json FILE            (MotionNet vs DIS flow)

`late` streams are trained with `twostream train --stream spatial|temporal`; convfusion starts
from them (--spatial-init, --temporal-init), hidden from the temporal one (--temporal-init) and
its bundle late-fuses the spatial one (export --spatial). See docs/models.md.

example (weizmann4, actors 0 and 1 held out):
  twostream family train i3d runs/extract/w4 --split group --group-regex 'actor(\\d+)' --val-groups 0,1 \\
      --epochs 6 --out runs/families/i3d_val01
  twostream family export runs/families/i3d_val01 runs/bundles/i3d_val01
  twostream family eval runs/bundles/i3d_val01 runs/extract/w4 --split group --group-regex 'actor(\\d+)' \\
      --val-groups 0,1 --json runs/eval/i3d_val01.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
from pathlib import Path

FAMILY_NAMES = ("convfusion", "hidden", "i3d", "r2plus1d")


def configure(parser: argparse.ArgumentParser) -> None:
    from train.datasets import add_split_arguments

    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = sub.add_parser("train", help="train a family on an extraction")
    t.add_argument("family", choices=FAMILY_NAMES)
    t.add_argument("data", type=Path, help="output folder of `twostream extract`")
    t.add_argument("--out", type=Path, required=True, help="run folder (last.pt, log.csv, curves.png)")
    t.add_argument("--epochs", type=int, default=6)
    t.add_argument("--batch-size", type=int, default=4, help="videos per batch (each gives K windows)")
    t.add_argument("--segments", type=int, help="K windows per video (default: the family's)")
    t.add_argument("--lr", type=float, help="AdamW learning rate (default: the family's)")
    t.add_argument("--weights", choices=("imagenet", "none"), help="ImageNet init or from scratch (default: family's)")
    t.add_argument("--clip-length", type=int, help="i3d/r2plus1d: T frames per clip (default 8)")
    t.add_argument("--clip-stride", type=int, help="i3d/r2plus1d: temporal stride of the clip (default 1)")
    t.add_argument("--inflate", choices=("all_dw", "stem_last", "none"), help="i3d: convs with a temporal extent")
    t.add_argument("--time-pool", choices=("none", "stem", "stem2"),
                   help="i3d: average frame pairs after the stem (stem: T/2 for every block), and again before "
                        "stage 4 (stem2: T/4 there); default none (T frames through the whole network)")
    t.add_argument("--fuse-at", choices=("block", "head"), help="convfusion: fusion point (default block)")
    t.add_argument("--fusion-method", choices=("conv", "sum", "max"), help="convfusion: fusion (default conv)")
    t.add_argument("--no-score-fusion", action="store_true", help="convfusion: no late score fusion on top")
    t.add_argument("--no-temporal-fusion", action="store_true", help="convfusion: TSN average instead of 3D fusion")
    t.add_argument("--flow-length", type=int, help="convfusion: L flow fields per window; hidden: L (L+1 frames, "
                   "L predicted fields); default 10, as the late temporal stream it starts from")
    t.add_argument("--motion-width", type=int, help="hidden: MotionNet width (32 = half width, default)")
    t.add_argument("--motion-epochs", type=int, help="hidden: unsupervised MotionNet epochs before end-to-end")
    t.add_argument("--motion-init", type=Path, help="hidden: MotionNet weights (RUN/motion.pt) instead of pretraining")
    t.add_argument("--spatial-init", type=Path, help="convfusion: trained late spatial checkpoint (RUN/last.pt)")
    t.add_argument("--temporal-init", type=Path, help="convfusion/hidden: trained late temporal checkpoint")
    t.add_argument("--tiny", action="store_true", help="r2plus1d: the narrow test variant")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    t.add_argument("--max-steps", type=int, default=0, help="batches per epoch cap (smoke runs)")
    add_split_arguments(t)

    e = sub.add_parser("export", help="export a family run to a format-2 bundle")
    e.add_argument("run", type=Path, help="family run folder or its last.pt")
    e.add_argument("out", type=Path)
    e.add_argument("--spatial", type=Path, help="hidden: late spatial run/checkpoint fused with it")
    e.add_argument("--fusion-spatial", type=float, default=1.0)
    e.add_argument("--fusion-other", type=float, default=1.5, help="hidden: weight of the hidden stream")
    e.add_argument("--quantize", choices=("none", "int8"), default="none")
    e.add_argument("--windows", type=int, default=64, help="real windows for parity and int8 calibration")
    e.add_argument("--tolerance", type=float, default=1e-3)
    e.add_argument("--min-agreement", type=float, default=0.9)

    el = sub.add_parser("export-late", help="export late spatial + temporal checkpoints as a format-2 bundle")
    el.add_argument("spatial", type=Path)
    el.add_argument("temporal", type=Path)
    el.add_argument("out", type=Path)
    el.add_argument("--fusion-spatial", type=float, default=1.0)
    el.add_argument("--fusion-temporal", type=float, default=1.5)
    el.add_argument("--quantize", choices=("none", "int8"), default="none")
    el.add_argument("--windows", type=int, default=64)
    el.add_argument("--tolerance", type=float, default=1e-3)
    el.add_argument("--min-agreement", type=float, default=0.9)

    v = sub.add_parser("eval", help="clip accuracy of a format-2 bundle through ONNX Runtime")
    v.add_argument("bundle", type=Path)
    v.add_argument("data", type=Path, help="extraction (same size and flow settings as the bundle)")
    v.add_argument("--windows", type=int, default=25)
    v.add_argument("--threads", type=int, default=1)
    v.add_argument("--json", type=Path)
    add_split_arguments(v)

    b = sub.add_parser("bench", help="params, GFLOPs and ONNX Runtime ms/window of a family network")
    g = b.add_mutually_exclusive_group(required=True)
    g.add_argument("--run", type=Path, help="a trained family run (its weights; int8 calibrated on its data)")
    g.add_argument("--family", choices=FAMILY_NAMES + ("late-spatial", "late-temporal"),
                   help="an untrained network of this family (cost only)")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for --family, e.g. fuse_at=head, inflate=stem_last, motion_width=64")
    b.add_argument("--input-size", type=int, default=112)
    b.add_argument("--int8", action="store_true", help="also time a static int8 QDQ graph")
    b.add_argument("--conv3d", action="store_true", help="i3d: also time the plain Conv3d export")
    b.add_argument("--data", type=Path, help="extraction for int8 calibration windows (default: random inputs)")
    b.add_argument("--runs", type=int, default=20)
    b.add_argument("--json", type=Path)

    m = sub.add_parser("motion-eval", help="MotionNet flow against DIS on held-out frames, and its cost")
    m.add_argument("run", type=Path, help="hidden run folder (last.pt) or RUN/motion.pt")
    m.add_argument("data", type=Path)
    m.add_argument("--windows", type=int, default=8, help="windows per video")
    m.add_argument("--json", type=Path)
    add_split_arguments(m)


def _resolve(path: Path) -> Path:
    from stream.core.errors import ConfigError

    if path.is_dir():
        if (path / "last.pt").is_file():
            return path / "last.pt"
        raise ConfigError(f"{path}: no last.pt in this run folder")
    if not path.is_file():
        raise ConfigError(f"{path}: no such checkpoint")
    return path


def _command() -> str:
    return "twostream " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _split(args, index):
    from stream.core.errors import ConfigError
    from train.datasets import Dataset, VideoItem, make_split, split_spec_from_args

    items = [VideoItem(rel, int(v["label"])) for rel, v in index["videos"].items()]
    if not items:
        raise ConfigError(f"{args.data}: the extraction holds no videos")
    return make_split(Dataset(Path(index["source"]), index["classes"], items), split_spec_from_args(args))


def _train(args) -> int:
    from stream.core.errors import ConfigError
    from train.cmd_train import git_commit
    from train.extract import read_index
    from train.families.loop import train_family
    from train.families.registry import FAMILIES

    index = read_index(args.data)
    split = _split(args, index)
    if not split.train:
        raise ConfigError(f"split '{split.description}' leaves no training videos")
    if args.epochs < 1 or args.batch_size < 1:
        raise ConfigError("--epochs and --batch-size must be >= 1")
    family = FAMILIES[args.family]
    cfg = dict(family.defaults)
    overrides = {"segments": args.segments, "lr": args.lr, "init_weights": args.weights,
                 "clip_length": args.clip_length,
                 "clip_stride": args.clip_stride, "inflate": args.inflate, "time_pool": args.time_pool,
                 "fuse_at": args.fuse_at,
                 "fusion_method": args.fusion_method, "motion_width": args.motion_width,
                 "motion_epochs": args.motion_epochs}
    if args.flow_length is not None:  # convfusion's flow_stack L, hidden's frame_stack L
        overrides["stack_length" if args.family == "hidden" else "flow_length"] = args.flow_length
    for key, value in overrides.items():
        if value is not None:
            if key not in cfg:
                raise ConfigError(f"--{key.replace('_', '-')} does not apply to family {args.family}")
            cfg[key] = value
    if args.no_score_fusion or args.no_temporal_fusion:
        if args.family != "convfusion":
            raise ConfigError("--no-score-fusion / --no-temporal-fusion apply to convfusion only")
        cfg["score_fusion"] = not args.no_score_fusion
        cfg["temporal_fusion"] = not args.no_temporal_fusion
    if args.tiny:
        cfg["tiny"] = True
    cfg.update(mean=[127.0, 127.0, 127.0], std=[128.0, 128.0, 128.0])
    if "flow_length" in cfg or "stack_length" in cfg:
        cfg.setdefault("bound", float(index["flow"]["bound"]))
    for init in (args.spatial_init, args.temporal_init):
        if init is not None and not Path(init).is_file():
            raise ConfigError(f"{init}: no such checkpoint")
    repo = Path(__file__).resolve().parents[1]
    meta = {"data": str(index["source"]), "extracted": str(Path(args.data).resolve()),
            "input_size": int(index["input_size"]), "flow": dict(index["flow"]), "split": split.description,
            "train_groups": list(split.groups.get("train", [])),
            "val_groups": list(split.groups.get("val", [])), "val_videos": [it.rel for it in split.val],
            "train_videos": len(split.train), "train_items": sorted(it.rel for it in split.train),
            "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
            "spatial_init": str(args.spatial_init or ""), "temporal_init": str(args.temporal_init or ""),
            "git_commit": git_commit(repo), "command": _command(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    print(f"{args.family}: {len(split.train)} train / {len(split.val)} val videos; {split.description}; "
          f"config {json.dumps(cfg, sort_keys=True)}", flush=True)
    try:
        train_family(args.family, cfg, args.data, index, split, args.out, epochs=args.epochs,
                     batch_size=args.batch_size,
                     seed=args.seed, meta=meta, spatial_init=args.spatial_init and str(_resolve(args.spatial_init)),
                     temporal_init=args.temporal_init and str(_resolve(args.temporal_init)),
                     motion_init=args.motion_init and str(args.motion_init), max_steps=args.max_steps,
                     threads=args.threads, log=lambda s: print(s, flush=True))
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(str(exc).splitlines()[0][:300]) from None
    print(f"done: {args.out / 'last.pt'}")
    return 0


def _provenance(meta: dict, extra: dict) -> dict:
    keep = ("data", "split", "train_groups", "val_groups", "epochs", "batch_size", "seed", "git_commit", "command",
            "date", "spatial_init", "temporal_init")
    out = {f"train_{k}" if k in ("command", "git_commit", "date") else k: meta[k] for k in keep if k in meta}
    return {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in {**out, **extra}.items()}


def _export(args) -> int:
    from train.cmd_train import git_commit
    from train.extract import read_index
    from train.families.export import export_network, network_entry, real_windows, run_training_videos, write_bundle
    from train.families.loop import load_family_checkpoint
    from train.families.registry import FAMILIES, input_params

    model, meta = load_family_checkpoint(_resolve(args.run))
    family = FAMILIES[meta["family"]]
    cfg = meta["config"]
    params = input_params(cfg)
    index = read_index(meta["extracted"])
    size = int(meta["input_size"])
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    kinds = family.kinds
    # parity, int8 calibration and int8 agreement: windows of the run's training videos only (never held-out ones)
    train_rels = run_training_videos(meta, index)
    check = real_windows(meta["extracted"], index, kinds, params, args.windows, cfg["mean"], cfg["std"],
                         rels=train_rels)
    reports = [export_network(model, out, family.onnx_name, kinds, size, params, check, check, quantize=args.quantize,
                              tolerance=args.tolerance, min_agreement=args.min_agreement,
                              int8_from=family.int8_from)]
    networks = [network_entry(family.onnx_name, kinds, params)]
    fusion = {"method": "single", "network": family.onnx_name}
    if meta["family"] == "hidden":
        from stream.core.errors import ConfigError
        from train.cmd_export import training_videos
        from train.engine import load_checkpoint
        from train.models import build_model

        if args.spatial is None:
            raise ConfigError("hidden bundles late-fuse a spatial stream: give --spatial SPATIAL_RUN")
        sck = load_checkpoint(_resolve(args.spatial))
        spatial = build_model(sck["meta"]["arch"], len(meta["classes"]), 3, weights=None)
        spatial.load_state_dict(sck["model"], strict=True)
        shared = sorted(set(train_rels) & set(training_videos(sck["meta"], index)))
        if not shared:
            raise ConfigError(f"{args.spatial}: the spatial checkpoint and the run share no training video to "
                              f"calibrate on")
        scheck = real_windows(meta["extracted"], index, ("frame",), params, args.windows, cfg["mean"], cfg["std"],
                              rels=shared)
        reports.insert(0, export_network(spatial.eval(), out, "spatial", ("frame",), size, params, scheck, scheck,
                                         quantize=args.quantize, tolerance=args.tolerance,
                                         min_agreement=args.min_agreement))
        networks.insert(0, network_entry("spatial", ("frame",), params))
        fusion = {"method": "late", "weights": {"spatial": args.fusion_spatial, family.onnx_name: args.fusion_other}}
    repo = Path(__file__).resolve().parents[1]
    provenance = _provenance(meta, {"config": cfg, "export_command": _command(), "export_git_commit": git_commit(repo),
                                    "export_date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                                        timespec="seconds"),
                                    "networks": reports,
                                    "calibration": f"{len(train_rels)} training videos of {meta['extracted']} "
                                                   f"(validation videos excluded)",
                                    "spatial_checkpoint": str(args.spatial or "")})
    arch = {"convfusion": f"efficientnet_lite0 x2, {cfg.get('fusion_method')} fusion at {cfg.get('fuse_at')}",
            "hidden": f"tiny_motionnet(width {cfg.get('motion_width')}) + efficientnet_lite0",
            "i3d": f"efficientnet_lite0 inflated ({cfg.get('inflate')}), T={cfg.get('clip_length')}"
                   + (f", time pool {cfg['time_pool']}" if cfg.get("time_pool", "none") != "none" else ""),
            "r2plus1d": "torchvision r2plus1d_18"}[meta["family"]]
    write_bundle(out, family=meta["family"], arch=arch, labels=meta["classes"], input_size=size, mean=cfg["mean"],
                 std=cfg["std"], flow=meta["flow"], flow_length=params["flow_length"], networks=networks, fusion=fusion,
                 provenance=provenance)
    for r in reports:
        print(f"{r['name']}: {r['precision']}, parity max |ORT - torch| {r['parity_max_abs']:.2e} on "
              f"{r['parity_windows']} real windows" + (f", int8 top-1 agreement {r['int8_top1_agreement']:.3f}"
                                                       if "int8_top1_agreement" in r else ""))
    print(f"wrote {out}")
    return 0


def _export_late(args) -> int:
    from stream.core.errors import ConfigError
    from train.cmd_export import training_videos
    from train.cmd_train import git_commit
    from train.engine import load_checkpoint
    from train.extract import read_index
    from train.families.export import export_network, network_entry, real_windows, write_bundle
    from train.models import build_model

    ckpts = {k: load_checkpoint(_resolve(p)) for k, p in (("spatial", args.spatial), ("temporal", args.temporal))}
    smeta, tmeta = ckpts["spatial"]["meta"], ckpts["temporal"]["meta"]
    L = int(tmeta["flow_length"])
    params = {"flow_length": L, "clip_length": 8, "clip_stride": 1, "stack_length": L}
    index = read_index(tmeta["extracted"])
    # parity, int8 calibration and int8 agreement: videos both streams trained on (never held-out ones)
    train_rels = sorted(set(training_videos(smeta, read_index(smeta["extracted"])))
                        & set(training_videos(tmeta, index)))
    if not train_rels:
        raise ConfigError("the spatial and temporal checkpoints share no training video to calibrate on")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    reports, networks = [], []
    for name, kind, ck in (("spatial", "frame", ckpts["spatial"]), ("temporal", "flow_stack", ckpts["temporal"])):
        m = ck["meta"]
        net = build_model(m["arch"], len(m["classes"]), int(m["in_channels"]), weights=None)
        net.load_state_dict(ck["model"], strict=True)
        check = real_windows(m["extracted"], read_index(m["extracted"]), (kind,), params, args.windows, m["mean"],
                             m["std"], rels=train_rels)
        reports.append(export_network(net.eval(), out, name, (kind,), int(m["input_size"]), params, check, check,
                                      quantize=args.quantize, tolerance=args.tolerance,
                                      min_agreement=args.min_agreement))
        networks.append(network_entry(name, (kind,), params))
    provenance = {"data": str(tmeta["data"]), "split": str(tmeta["split"]),
                  "spatial_command": str(smeta.get("command", "")), "temporal_command": str(tmeta.get("command", "")),
                  "train_git_commit": str(tmeta.get("git_commit", "")), "export_command": _command(),
                  "export_git_commit": git_commit(Path(__file__).resolve().parents[1]),
                  "networks": json.dumps(reports),
                  "calibration": f"{len(train_rels)} training videos of {tmeta['extracted']} "
                                 f"(validation videos excluded)"}
    write_bundle(out, family="late", arch=f"{smeta['arch']} spatial + temporal", labels=smeta["classes"],
                 input_size=int(tmeta["input_size"]), mean=smeta["mean"], std=smeta["std"], flow=tmeta["flow"],
                 flow_length=L, networks=networks,
                 fusion={"method": "late",
                         "weights": {"spatial": args.fusion_spatial, "temporal": args.fusion_temporal}},
                 provenance=provenance)
    print(f"wrote {out}")
    return 0


def _eval(args) -> int:
    from train.extract import read_index
    from train.families.evaluate import evaluate

    index = read_index(args.data)
    split = _split(args, index)
    items = split.val if split.val else split.train
    result = evaluate(args.bundle, args.data, index, [it.rel for it in items], {it.rel: it.label for it in items},
                      windows=args.windows, threads=args.threads)
    result.update(split=split.description, command=_command())
    print(" ".join(f"{k}={v}" for k, v in result["accuracy"].items()) + f" on {result['videos']} videos; "
          f"ms/window (batch 1) {result['ms_per_window_batch1']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


def _bench(args) -> int:
    import tempfile

    import torch

    from stream.core.errors import ConfigError
    from train.families.bench import ort_ms, params_and_gflops
    from train.families.export import export_graph, input_shapes, quantize_int8, real_windows
    from train.families.registry import FAMILIES, input_params

    if args.run:
        from train.families.loop import load_family_checkpoint

        model, meta = load_family_checkpoint(_resolve(args.run))
        name, cfg, size = meta["family"], meta["config"], int(meta["input_size"])
        kinds = FAMILIES[name].kinds
    elif args.family.startswith("late-"):
        from train.models import build_model

        name, size = args.family, args.input_size
        cfg = {"flow_length": 10}
        for kv in args.set:
            k, _, v = kv.partition("=")
            cfg[k] = int(v)
        kinds = ("frame",) if name == "late-spatial" else ("flow_stack",)
        model = build_model("efficientnet_lite0", 4, 3 if name == "late-spatial" else 2 * cfg["flow_length"])
    else:
        name, size = args.family, args.input_size
        cfg = dict(FAMILIES[name].defaults, init_weights="none")
        for kv in args.set:
            k, _, v = kv.partition("=")
            if k not in cfg:
                raise ConfigError(f"--set {kv}: {name} has no setting {k!r} (has {', '.join(sorted(cfg))})")
            cfg[k] = type(cfg[k])(v) if not isinstance(cfg[k], bool) else v.lower() in ("1", "true", "yes")
        kinds = FAMILIES[name].kinds
        model = FAMILIES[name].build(cfg, 4)
    params = input_params(cfg)
    shapes = input_shapes(kinds, size, params)
    model = model.eval()
    n_params, gflops = params_and_gflops(model, tuple(torch.zeros(1, *shapes[k]) for k in kinds))
    result = {"family": name, "config": cfg, "input_size": size, "inputs": list(kinds), "params": n_params,
              "gflops_per_window": round(gflops, 4), "ort_ms_per_window": {}, "ort_cpu_ms_per_window": {}, "threads": 1,
              "load_average_1min_at_start": round(os.getloadavg()[0], 2),
              "command": _command(), "torch": torch.__version__}
    import onnxruntime

    result["onnxruntime"] = onnxruntime.__version__
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {"fp32": export_graph(model, Path(tmp) / "fp32.onnx", kinds, shapes)}
        if args.conv3d and name == "i3d":
            from train.families.i3d import set_impl

            set_impl(model, "conv3d")
            graphs["fp32_conv3d"] = export_graph(model, Path(tmp) / "conv3d.onnx", kinds, shapes)
            set_impl(model, "2d")
        if args.int8:
            if args.data:
                from train.extract import read_index

                calib = real_windows(args.data, read_index(args.data), kinds, params, 32, [127.0] * 3, [128.0] * 3)
            else:
                import numpy as np

                rng = np.random.default_rng(0)
                calib = {k: rng.uniform(-1, 1, size=(16, *s)).astype("float32") for k, s in shapes.items()}
            graphs["int8"] = quantize_int8(graphs["fp32"], Path(tmp) / "int8.onnx", calib)
        for precision, path in graphs.items():
            for batch in (1, 8):
                ms, cpu = ort_ms(path, shapes, batch, runs=args.runs if batch == 1 else max(5, args.runs // 4))
                result["ort_ms_per_window"][f"{precision}_b{batch}"] = round(ms, 3)
                result["ort_cpu_ms_per_window"][f"{precision}_b{batch}"] = round(cpu, 3)
                print(f"{name} {precision} batch {batch}: {ms:.2f} ms/window wall, {cpu:.2f} ms thread CPU", flush=True)
    print(f"{name}: {n_params / 1e6:.2f} M params, {gflops:.3f} GFLOPs/window")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


def _motion_eval(args) -> int:
    from train.extract import read_index
    from train.families.motion_eval import motion_vs_dis

    index = read_index(args.data)
    split = _split(args, index)
    items = split.val if split.val else split.train
    result = motion_vs_dis(_resolve(args.run) if args.run.is_dir() else args.run, args.data, index,
                           [it.rel for it in items], windows=args.windows)
    result.update(split=split.description, command=_command())
    print(json.dumps({k: v for k, v in result.items() if k != "per_video"}, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


def main(args: argparse.Namespace) -> int:
    return {"train": _train, "export": _export, "export-late": _export_late, "eval": _eval, "bench": _bench,
            "motion-eval": _motion_eval}[args.action](args)
