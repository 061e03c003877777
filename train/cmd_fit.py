"""One command from a folder of labelled videos to an evaluated, deployable model bundle.

DATA holds a folder of videos per class (DATA/<class>/<video>; UCF101 and HMDB51 unpack this way).
Footage of other activities - a DATA/_background folder or --background DIR - trains a class that
`twostream run` publishes as "none", and sets the decision threshold ([policy] min_score in
bundle.toml: the smallest one keeping false alarms on validation background footage at or under
--target-fa per minute). Every phase shows a progress bar; OUT/report/ gets summary.md, per-class
table, confusion matrix, training curves and the threshold plot. Intermediate files stay in
OUT/work/ (delete it to ship the bundle): re-running the same command resumes where it stopped.

--family picks the model family (docs/models.md): late (default: today's two-stream), convfusion
(the late streams, then conv fusion fine-tuned from them), hidden (the late streams, then MotionNet +
temporal Lite0 from the temporal one, late-fused with the spatial one) or i3d (inflated ImageNet
Lite0 on 8-frame clips, no late streams); the family network trains --family-epochs (the recipes of
docs/models.md: convfusion and i3d 4; hidden 15 end-to-end epochs after twice as many unsupervised
MotionNet epochs, the zoo's 30 + 15). Export, evaluation, the "none" threshold and the report are the same for
every family. Not supported with a family other than late: --time-budget, and --arch other than
efficientnet_lite0 (the families' networks are built on it).

examples:
  twostream fit ../shared/data/weizmann4 --out runs/w4
  twostream fit my_videos --out runs/mine --background other_footage/ --time-budget 10m
  twostream fit my_videos --out runs/mine --resume        # continue an interrupted fit as it was started
  twostream fit my_videos --out runs/mine_i3d --family i3d # the inflated I3D instead of two streams
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

FIT_FAMILIES = ("late", "convfusion", "hidden", "i3d")  # those train.fit.family_runs knows
# --family-epochs defaults: hidden's 4 (+ 4 MotionNet) epochs left its held-out clips at 24/28 on weizmann4's folds,
# 15 (+ 30) reached 27/28 and clean-stream accuracy 0.846 (docs/models.md "hidden recipe")
FAMILY_EPOCHS = {"convfusion": 4, "hidden": 15, "i3d": 4}


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", type=Path, nargs="?", help="DATA/<class>/<video> (a _background class folder is footage "
                   "of other activities)")
    p.add_argument("--out", type=Path, required=True, help="the bundle directory to write (report/ and work/ inside)")
    p.add_argument("--background", type=Path, help="folder of footage showing none of the classes (trains a "
                   "_background class, published as none, and sets the threshold)")
    p.add_argument("--epochs", type=int, default=15, help="training epochs per stream (default 15; with --time-budget: "
                   "the most it may use)")
    p.add_argument("--time-budget", metavar="T", help="whole-run budget, e.g. 10m: epochs are chosen from a measured "
                   "probe of each stream so that the fit ends in time")
    p.add_argument("--arch", default="efficientnet_lite0", choices=("efficientnet_lite0", "resnet18",
                                                                   "mobilenet_v3_small"))
    p.add_argument("--family", default="late", choices=FIT_FAMILIES,
                   help="model family (default late: spatial + temporal streams, late fusion); see above")
    p.add_argument("--family-epochs", type=int, default=None, help="epochs of the family network (hidden: its "
                   "end-to-end epochs, after twice as many MotionNet epochs); default: convfusion 4, i3d 4, hidden 15 "
                   "(docs/models.md)")
    p.add_argument("--resume", action="store_true", help="continue the fit in --out with the arguments it was "
                   "started with")
    p.add_argument("--no-quantize", action="store_true", help="export fp32 instead of int8")
    p.add_argument("--group-regex", default="auto", help="regex whose first group names a video's group (actor...) "
                   "kept on one side of the split; auto: actorN, personN, subjectN, _gNN_ if every name has one; "
                   "'' for a stratified random split")
    p.add_argument("--val-fraction", type=float, default=0.25, help="share of groups (or videos) for validation")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the training")
    p.add_argument("--target-fa", type=float, default=1.0, help="false alarms per minute of background footage the "
                   "threshold must not exceed (default 1)")
    p.add_argument("--stride", type=int, default=5, help="frames between windows, as `twostream run` (default 5)")
    p.add_argument("--size", type=int, default=112, help="model input size")
    p.add_argument("--flow-length", type=int, default=10, help="L: flow fields per temporal window")
    p.add_argument("--flow-subtract", default="median", choices=("none", "mean", "median"),
                   help="camera-motion compensation of the flow (default median)")
    p.add_argument("--max-frames", type=int, default=300, help="frames decoded per video (0: all; default 300)")
    p.add_argument("--batch-size", type=int, default=4, help="videos per training batch")
    p.add_argument("--workers", type=int, default=2, help="extraction processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(args: argparse.Namespace) -> int:
    from stream.core.errors import ConfigError
    from train.fit import STATE_FILE, fit, load_state, parse_duration

    work = args.out / "work"
    if args.resume:
        state = load_state(work)
        if not state.get("options"):
            raise ConfigError(f"--resume: {args.out} holds no fit to continue ({work / STATE_FILE} is missing)")
        opts = state["options"]
        print(f"resuming: {opts.get('command', '')}")
    else:
        if args.data is None:
            raise ConfigError("DATA is required (or --resume to continue the fit in --out)")
        if args.epochs < 1 or args.batch_size < 1 or args.stride < 1 or not 16 <= args.size <= 1024:
            raise ConfigError("--epochs, --batch-size and --stride must be >= 1 and --size in 16..1024")
        if args.target_fa < 0:
            raise ConfigError(f"--target-fa {args.target_fa}: must be >= 0")
        if args.family != "late":
            if args.time_budget:
                raise ConfigError(f"--time-budget is supported with --family late only (not {args.family}); "
                                  "give --epochs / --family-epochs")
            if args.arch != "efficientnet_lite0":
                raise ConfigError(f"--arch {args.arch}: --family {args.family} is built on efficientnet_lite0 "
                                  "(--arch applies to --family late)")
            if args.family_epochs is None:
                args.family_epochs = FAMILY_EPOCHS[args.family]
            if args.family_epochs < 1:
                raise ConfigError("--family-epochs must be >= 1")
        opts = {
            "data": str(args.data.resolve()), "background": str(args.background.resolve()) if args.background else "",
            "out": str(args.out), "arch": args.arch, "epochs": args.epochs,
            "time_budget": parse_duration(args.time_budget) if args.time_budget else 0.0, "size": args.size,
            "flow_length": args.flow_length, "flow_subtract": args.flow_subtract, "val_fraction": args.val_fraction,
            "seed": args.seed, "group_regex": args.group_regex, "quantize": "none" if args.no_quantize else "int8",
            "max_frames": args.max_frames, "batch_size": args.batch_size, "stride": args.stride,
            "target_fa": args.target_fa, "workers": max(1, args.workers), "family": args.family,
            "family_epochs": args.family_epochs,
            "command": "twostream fit " + " ".join(shlex.quote(a) for a in sys.argv[2:]),
        }
    fit(opts, progress=not args.no_progress)
    return 0
