"""Stitch labelled clips into annotated continuous streams (development set for streaming quality).

DATA is a clip dataset laid out as DATA/CLASS/*.mp4 (e.g. ../shared/data/weizmann4). For each
group of clips (weizmann4: one actor; datasets without GROUP_CLASS.mp4 names, like k400tiny2:
the N-th clip of every class, so each switch also changes scene) one stream OUT/DATASET_GROUP.mp4
is written, switching action at every clip boundary, with its annotation OUT/DATASET_GROUP.json
({"fps", "frames", "segments": [{"label", "start", "end"}]}, frame indices, end exclusive).

--handheld adds a simulated handheld camera (smooth random pan/rotation/zoom, shake, sensor
noise, strong JPEG compression) and writes DATASET_GROUP_handheld.mp4 with the same clip order
and segments as the clean stream of the same --seed.

examples:
  twostream make-sequences ../shared/data/weizmann4 dev/streams
  twostream make-sequences ../shared/data/weizmann4 dev/streams --handheld
  twostream make-sequences ../shared/data/k400tiny2 dev/k400 --seconds-per-action 4 --groups g00,g01
"""
from __future__ import annotations

import argparse

from stream.core.errors import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", help="clip dataset directory (DATA/CLASS/*.mp4)")
    parser.add_argument("out", metavar="OUT", help="output directory for STREAM.mp4 + STREAM.json")
    parser.add_argument("--handheld", action="store_true", help="simulate a handheld camera (pan/shake/zoom, noise, "
                        "compression)")
    parser.add_argument("--seconds-per-action", type=float, default=0.0, metavar="S",
                        help="loop/cut every clip to S seconds (default 0: each clip plays once, its own length)")
    parser.add_argument("--rounds", type=int, default=2, help="times every clip of a group appears (default 2)")
    parser.add_argument("--groups", default="", help="comma-separated groups to make (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for clip order and camera motion")


def main(args: argparse.Namespace) -> int:
    from train.sequences import make_sequences

    if args.seconds_per_action < 0 or args.seconds_per_action > 600:
        raise ConfigError(f"--seconds-per-action {args.seconds_per_action}: expected 0..600 seconds")
    if not 1 <= args.rounds <= 100:
        raise ConfigError(f"--rounds {args.rounds}: expected 1..100")
    groups = [g for g in args.groups.split(",") if g] or None
    results = make_sequences(args.data, args.out, rounds=args.rounds, seconds_per_action=args.seconds_per_action,
                             handheld=args.handheld, seed=args.seed, groups=groups)
    for r in results:
        labels = " ".join(f"{s.label}:{s.length}" for s in r.segments)
        print(f"{r.video}  {r.frames} frames  {labels}")
    return 0
