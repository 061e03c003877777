"""Train the spatial (RGB frames) or temporal (stacked optical flow) stream on an extracted dataset.

TSN recipe: K segments per video with averaged (consensus) scores, corner crops with scale
jitter and horizontal flips (flow flips negate x), partial BN, dropout, SGD or AdamW with a
cosine schedule. Writes OUT/last.pt every epoch (resume with --resume OUT/last.pt), OUT/best.pt
(best validation accuracy), OUT/log.csv and OUT/curves.png. CPU by default; CUDA + AMP when
available; several GPUs/nodes with `torchrun --nproc_per_node N -m stream.cli train ...`.

example:
  twostream extract ../shared/data/weizmann4 runs/extract/weizmann4
  twostream train --stream temporal runs/extract/weizmann4 --split group --group-regex 'actor(\\d+)' \\
      --val-groups 5,6 --out runs/train/w4_temporal
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from train.datasets import add_split_arguments
from train.models import ARCHS, MODELS, default_weights


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="output folder of `twostream extract`")
    parser.add_argument("--stream", required=True, choices=("spatial", "temporal"))
    parser.add_argument("--out", type=Path, help="run folder (default runs/train/<stream>)")
    parser.add_argument("--arch", default=ARCHS[0], choices=ARCHS,
                        help="backbone (the table in train/models.py; default %(default)s)")
    with_imagenet = ", ".join(name for name, spec in MODELS.items() if spec.has_imagenet)
    parser.add_argument("--weights", default="auto",
                        help=f"imagenet, none, or a state-dict file (default: imagenet for {with_imagenet})")
    parser.add_argument("--init", default="cross_modality", choices=("cross_modality", "scratch"),
                        help="temporal first conv: TSN cross-modality init from RGB weights, or random")
    parser.add_argument("--flow-length", type=int, default=10, help="L: flow fields per temporal input (2L channels)")
    parser.add_argument("--segments", type=int, default=3, help="TSN segments K per video")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8, help="videos per batch (each gives K snippets)")
    parser.add_argument("--optimizer", default="adamw", choices=("sgd", "adamw"))
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--warmup-epochs", type=float, default=1.0)
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--bn", default="train", choices=("partial", "frozen", "train"),
                        help="train: all BN layers adapt (measured best on the small sets here, see docs/training.md); "
                             "partial: TSN partial BN (only the first BN layer adapts); frozen: none")
    parser.add_argument("--clip-grad", type=float, default=20.0, help="gradient norm clip (0: off)")
    parser.add_argument("--mean", type=float, nargs=3, default=(127.0, 127.0, 127.0))
    parser.add_argument("--std", type=float, nargs=3, default=(128.0, 128.0, 128.0))
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--cache", action="store_true", help="keep decoded videos in memory (small datasets)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", type=Path, help="checkpoint to continue from (e.g. OUT/last.pt)")
    parser.add_argument("--max-steps", type=int, default=0, help="stop each epoch after this many batches (smoke runs)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_split_arguments(parser)


def git_commit(repo: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    import torch.distributed as dist

    from stream.core.errors import ConfigError
    from train.datasets import Dataset, VideoItem, make_split, split_spec_from_args
    from train.engine import (
        SegmentConsensus,
        cosine_lambda,
        is_main_process,
        load_checkpoint,
        now,
        save_checkpoint,
        train_one_epoch,
        validate,
        write_log,
    )
    from train.extract import read_index
    from train.models import build_model
    from train.segments import SegmentDataset

    index = read_index(args.data)
    if args.flow_length < 1 or args.segments < 1 or args.epochs < 1 or args.batch_size < 1:
        raise ConfigError("--flow-length, --segments, --epochs and --batch-size must be >= 1")
    classes = index["classes"]
    items = [VideoItem(rel, int(v["label"])) for rel, v in index["videos"].items()]
    if not items:
        raise ConfigError(f"{args.data}: the extraction holds no videos")
    split = make_split(Dataset(Path(index["source"]), classes, items), split_spec_from_args(args))
    if not split.train:
        raise ConfigError(f"split '{split.description}' leaves no training videos")

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if distributed:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    in_channels = 3 if args.stream == "spatial" else 2 * args.flow_length
    weights = args.weights
    if weights == "auto":
        weights = default_weights(args.arch)
    elif weights == "none":
        weights = None
    try:
        backbone = build_model(args.arch, len(split.classes), in_channels=in_channels, weights=weights,
                               dropout=args.dropout, init=args.init)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:  # bad weights file: one clear line
        raise ConfigError(f"--weights {args.weights}: {str(exc).splitlines()[0][:300]}") from None
    model = SegmentConsensus(backbone).to(device)
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                          else None)

    common = dict(stream=args.stream, segments=args.segments, flow_length=args.flow_length, mean=tuple(args.mean),
                  std=tuple(args.std), seed=args.seed, cache=args.cache)
    train_set = SegmentDataset(args.data, index, split.train, train=True, **common)
    val_set = SegmentDataset(args.data, index, split.val, train=False, **common) if split.val else None
    sampler = torch.utils.data.DistributedSampler(train_set, shuffle=True, seed=args.seed) if distributed else None
    generator = torch.Generator().manual_seed(args.seed)
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=sampler is None,
                                         sampler=sampler, num_workers=args.workers, generator=generator,
                                         drop_last=len(train_set) > args.batch_size,
                                         pin_memory=device.type == "cuda", persistent_workers=args.workers > 0)
    val_loader = None
    if val_set is not None:
        val_sampler = torch.utils.data.DistributedSampler(val_set, shuffle=False) if distributed else None
        val_loader = torch.utils.data.DataLoader(val_set, batch_size=args.batch_size, sampler=val_sampler,
                                                 num_workers=args.workers)

    params = [p for p in model.parameters() if p.requires_grad]
    if args.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    else:
        optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = len(loader) if not args.max_steps else min(len(loader), args.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_lambda(args.epochs * steps_per_epoch, int(args.warmup_epochs * steps_per_epoch)))
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")

    out = args.out or Path("runs/train") / args.stream
    out.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parents[1]
    meta = {
        "stream": args.stream, "arch": args.arch, "classes": list(split.classes), "in_channels": in_channels,
        "input_size": int(index["input_size"]), "flow_length": args.flow_length, "flow": dict(index["flow"]),
        "mean": [float(m) for m in args.mean], "std": [float(s) for s in args.std], "dropout": args.dropout,
        "data": str(index["source"]), "extracted": str(Path(args.data).resolve()), "split": split.description,
        "train_groups": list(split.groups.get("train", [])), "val_groups": list(split.groups.get("val", [])),
        "train_videos": len(split.train), "val_videos": len(split.val), "weights": str(weights),
        "train_items": sorted(it.rel for it in split.train),  # export calibrates on these only (never on val)
        "init": args.init if args.stream == "temporal" else "", "seed": args.seed,
        # camera-motion augmentation: the extraction's flow variants (train.camera_motion), drawn per sample
        "camera_motion": (index.get("camera_motion") or None) if args.stream == "temporal" else None,
        "hyperparameters": {"epochs": args.epochs, "batch_size": args.batch_size, "segments": args.segments,
                            "optimizer": args.optimizer, "lr": args.lr, "weight_decay": args.weight_decay,
                            "bn": args.bn, "dropout": args.dropout, "clip_grad": args.clip_grad},
        "git_commit": git_commit(repo), "command": "twostream train " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        if len(sys.argv) > 2 else "twostream train",
    }
    history: list[dict] = []
    start_epoch = 0
    if args.resume:
        ckpt = load_checkpoint(args.resume)
        if ckpt["meta"].get("stream") != args.stream or ckpt["meta"].get("arch") != args.arch:
            raise ConfigError(f"{args.resume}: checkpoint is {ckpt['meta'].get('stream')}/{ckpt['meta'].get('arch')}, "
                              f"not {args.stream}/{args.arch}")
        (model.module if distributed else model).backbone.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        start_epoch = int(ckpt["epoch"]) + 1
        history = list(ckpt.get("history", []))
        meta["resumed_from"] = str(args.resume)

    main_proc = is_main_process()
    if main_proc:
        print(f"{args.stream} {args.arch} on {device}: {len(split.train)} train / {len(split.val)} val videos, "
              f"{len(split.classes)} classes; {split.description}")
    best = max([r["val_acc"] for r in history if r.get("val_acc") not in (None, "")], default=-1.0)
    for epoch in range(start_epoch, args.epochs):
        t0 = now()
        train_set.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        tr = train_one_epoch(model, loader, optimizer, scheduler, scaler, device, bn_mode=args.bn,
                             clip_grad=args.clip_grad, progress=not args.no_progress, epoch=epoch,
                             max_steps=args.max_steps)
        row = {"epoch": epoch, "lr": round(lr, 8), "train_loss": round(tr["loss"], 5), "train_acc": round(tr["acc"], 4)}
        if val_loader is not None:
            va = validate(model, val_loader, device)
            row.update(val_loss=round(va["loss"], 5), val_acc=round(va["acc"], 4))
        row["seconds"] = round(now() - t0, 1)
        history.append(row)
        if main_proc:
            save_checkpoint(out / "last.pt", model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                            epoch=epoch, meta=meta, history=history)
            if val_loader is not None and row["val_acc"] > best:
                best = row["val_acc"]
                save_checkpoint(out / "best.pt", model=model, optimizer=optimizer, scheduler=scheduler,
                                scaler=scaler, epoch=epoch, meta=meta, history=history)
            write_log(out, history)
            print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    if distributed:
        dist.destroy_process_group()
    if main_proc:
        print(f"done: {out / 'last.pt'}")
    return 0
