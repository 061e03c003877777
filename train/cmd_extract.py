"""Precompute frames and optical flow for a folder-per-class dataset (DATA/<class>/<video>).

Frames are resized to the model input size and flow is computed and quantised by the same
code the runtime uses (stream.core.flow); the settings are recorded in OUT/extract.json. Runs in
parallel, resumes where it stopped, and reports every video it cannot decode.

--flow-subtract median removes each flow field's global (camera) motion, at extraction and, through
the bundle's [flow] subtract, at runtime. --camera-motion K also stores K flow variants per video
computed on camera-moved frames (random smooth pan/rotation/zoom and shake); `twostream train
--stream temporal` on such an extraction draws the clean flow or a variant per sample.

example: twostream extract ../shared/data/weizmann4 runs/extract/weizmann4
         twostream extract ../shared/data/weizmann4 runs/extract/weizmann4_cm2 --camera-motion 2
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
    parser.add_argument("--flow-subtract", default="none", choices=("none", "mean", "median"),
                        help="subtract each flow field's mean or median vector (camera-motion compensation)")
    parser.add_argument("--camera-motion", type=int, default=0, metavar="K",
                        help="also store K flow variants on camera-moved frames (training augmentation; 0: off)")
    parser.add_argument("--camera-motion-seed", type=int, default=0, help="seed of the camera trajectories")
    parser.add_argument("--max-frames", type=int, default=0, help="decode at most this many frames per video (0: all)")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes")


def main(args: argparse.Namespace) -> int:
    from stream.core.errors import ConfigError
    from stream.core.flow import FlowSettings
    from train.extract import extract_dataset

    if not 16 <= args.size <= 1024:
        raise ConfigError(f"--size {args.size}: expected 16..1024")
    flow = FlowSettings(backend=args.flow_backend, preset=args.flow_preset, bound=args.flow_bound,
                        stacking=args.stacking, subtract=args.flow_subtract).validate(where="--flow")
    if not 0 <= args.camera_motion <= 16:
        raise ConfigError(f"--camera-motion {args.camera_motion}: expected 0..16 variants")
    index = extract_dataset(args.data, args.out, size=args.size, flow=flow, max_frames=args.max_frames,
                            workers=max(1, args.workers), camera_motion=args.camera_motion,
                            camera_seed=args.camera_motion_seed)
    done, failed = len(index["videos"]), len(index["failed"])
    print(f"extracted {done} videos ({index['skipped_already_done']} already done) into {args.out}; "
          f"{failed} failed")
    for rel, err in index["failed"].items():
        print(f"  failed: {rel}: {err}")
    return 1 if failed and not done else 0
