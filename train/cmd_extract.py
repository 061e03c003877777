"""Precompute frames and optical flow for a folder-per-class dataset (DATA/<class>/<video>).

Frames are resized to the model input size and flow is computed and quantised by the same
code the runtime uses (stream.flow); the settings are recorded in OUT/extract.json. Runs in
parallel, resumes where it stopped, and reports every video it cannot decode.

example: twostream extract ../shared/data/weizmann4 runs/extract/weizmann4
"""
from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="dataset root: DATA/<class>/<video>")
    parser.add_argument("out", type=Path, help="output folder (created; reused to resume)")
    parser.add_argument("--size", type=int, default=112, help="model input size S (frames and flow are SxS)")
    parser.add_argument("--flow-backend", default="dis", choices=("dis", "farneback", "tvl1"))
    parser.add_argument("--flow-preset", default="fast", help="DIS preset: ultrafast, fast, medium")
    parser.add_argument("--flow-bound", type=float, default=20.0, help="clip flow to +-bound pixels")
    parser.add_argument("--stacking", default="interleaved", choices=("interleaved", "grouped"))
    parser.add_argument("--max-frames", type=int, default=0, help="decode at most this many frames per video (0: all)")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes")


def main(args: argparse.Namespace) -> int:
    from stream.errors import ConfigError
    from stream.flow import FlowSettings
    from train.extract import extract_dataset

    if not 16 <= args.size <= 1024:
        raise ConfigError(f"--size {args.size}: expected 16..1024")
    flow = FlowSettings(backend=args.flow_backend, preset=args.flow_preset, bound=args.flow_bound,
                        stacking=args.stacking).validate(where="--flow")
    index = extract_dataset(args.data, args.out, size=args.size, flow=flow, max_frames=args.max_frames,
                            workers=max(1, args.workers))
    done, failed = len(index["videos"]), len(index["failed"])
    print(f"extracted {done} videos ({index['skipped_already_done']} already done) into {args.out}; "
          f"{failed} failed")
    for rel, err in index["failed"].items():
        print(f"  failed: {rel}: {err}")
    return 1 if failed and not done else 0
