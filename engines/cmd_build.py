"""Build TensorRT plans for every network of a bundle (NVIDIA GPU + `pip install twostream[gpu]`).

Plans are written to BUNDLE/plans/ under a key of GPU name, compute capability, TensorRT
version, ONNX SHA-256, precision and max batch, with a JSON sidecar. An existing matching
plan is kept (use --force to rebuild); stale or foreign plans are reported and rebuilt.
An explicitly quantized network (Q/DQ nodes, e.g. `twostream export --quantize int8`, the shipped
models/default) is always built as explicit INT8 with no calibrator: its scales come from the
export; --fp16/--int8 then allow FP16 between the Q/DQ layers (engines.plans.build_mode).
INT8 of a float network calibrates on real videos (--calib: a video or a directory of videos)
through the same decode/flow/preprocessing code as the runtime, in batches of the calibration
profile's optimum size; the calibration cache is kept beside the plans.
"""
from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from engines.bundle import Bundle, read_bundle
from engines.capabilities import detect_capabilities, require_tensorrt
from engines.plans import (
    BuildMode,
    PlanStatus,
    build_mode,
    bundle_networks,
    calibration_batch_size,
    calibration_windows_per_video,
    find_plan,
    input_shape,
    onnx_file,
    onnx_has_qdq,
    plan_key,
    plans_dir,
    write_plan,
)
from stream.core.errors import ConfigError


@dataclass
class BuildResult:
    network: str
    path: Path
    built: bool  # False: an up-to-date plan was reused
    seconds: float
    note: str


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="model bundle directory (spatial.onnx, temporal.onnx, bundle.toml)")
    parser.add_argument("--fp16", action="store_true", help="allow FP16 kernels")
    parser.add_argument("--int8", action="store_true",
                        help="INT8: a Q/DQ (int8-exported) network as is; a float network with entropy calibration "
                             "(needs --calib)")
    parser.add_argument("--calib", metavar="DATA", help="video file or directory of videos for INT8 calibration")
    parser.add_argument("--calib-videos", type=int, default=32, metavar="N", help="videos sampled from DATA (32)")
    parser.add_argument("--calib-batches", type=int, default=16, metavar="N", help="calibration batches (16)")
    parser.add_argument("--max-batch", type=int, default=16, metavar="N",
                        help="largest batch of windows the plan accepts (16; the pipeline batches across cameras)")
    parser.add_argument("--workspace", type=int, default=1024, metavar="MB", help="builder workspace limit (1024)")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index (0)")
    parser.add_argument("--force", action="store_true", help="rebuild even when an up-to-date plan exists")


def precision_of(args) -> str:
    if args.calib and not args.int8:
        raise ConfigError("--calib is only used with --int8")
    return "int8" if args.int8 else "fp16" if args.fp16 else "fp32"


def build_bundle_plans(bundle: Bundle, *, precision: str, max_batch: int, workspace_mb: int, device: int = 0,
                       calib: str | None = None, calib_videos: int = 32, calib_batches: int = 16,
                       force: bool = False, log=print) -> list[BuildResult]:
    """Build (or reuse) one plan per network. Raises the GPU message when TensorRT is unusable."""
    caps = detect_capabilities()
    require_tensorrt(caps, "build-engines")
    if not 1 <= max_batch <= 1024:
        raise ConfigError(f"--max-batch {max_batch}: expected 1..1024")
    if not 64 <= workspace_mb <= 1 << 20:
        raise ConfigError(f"--workspace {workspace_mb}: expected 64..{1 << 20} MB")
    gpu = next((g for g in caps.gpus if g.index == device), None)
    if gpu is None:
        raise ConfigError(f"--device {device}: no such CUDA device (found {len(caps.gpus)})")
    from engines.tensorrt import build_plan

    results = []
    for network in bundle_networks(bundle):
        onnx_path = onnx_file(bundle, network)
        onnx_bytes = onnx_path.read_bytes()
        digest = hashlib.sha256(onnx_bytes).hexdigest()
        key = plan_key(bundle, network, gpu_name=gpu.name, compute_capability=gpu.compute_capability,
                       tensorrt_version=caps.tensorrt_version, precision=precision, max_batch=max_batch,
                       onnx_sha256=digest)
        status: PlanStatus = find_plan(bundle.path, key)
        if status.usable and not force:
            log(f"{network}: up to date ({status.path.name})")
            results.append(BuildResult(network, status.path, False, 0.0, "reused"))
            continue
        if status.state in ("stale", "foreign", "corrupt"):
            log(f"{network}: {status.message.split('; run')[0]}; building a new plan")
        mode = network_build_mode(onnx_bytes, precision, calib)
        calibrator, note = None, mode.note
        if mode.calibrate:
            calibrator, note = _calibrator(bundle, network, digest, calib, calib_videos, calib_batches, max_batch)
        elif calib:
            log(f"{network}: --calib not used: {mode.note}")
        log(f"{network}: building {precision} plan ({mode.note}) for {gpu.name}, batch 1..{max_batch} "
            f"(this takes a while)")
        start = time.perf_counter()
        plan = build_plan(onnx_bytes, name=str(onnx_path), shape_chw=input_shape(bundle, network),
                          max_batch=max_batch, precision=precision, workspace_mb=workspace_mb, device=device,
                          timing_cache=plans_dir(bundle.path) / f"timing-sm{gpu.compute_capability}"
                                                                f"-trt{caps.tensorrt_version}.cache",
                          calibrator=calibrator, mode=mode)
        seconds = time.perf_counter() - start
        path = write_plan(bundle.path, key, plan, extra={"built_seconds": round(seconds, 1), "calibration": note})
        log(f"{network}: wrote {path} ({len(plan) >> 10} KiB, {seconds:.1f} s)")
        results.append(BuildResult(network, path, True, seconds, note))
    return results


def calibration_inputs(bundle, network, calib, calib_videos, calib_batches, max_batch):
    """(videos, batch size, batch iterator) for INT8 calibration: batches of the profile's optimum size."""
    from engines.calibration import calibration_batches, find_calibration_videos

    videos = find_calibration_videos(calib, limit=calib_videos)
    batch_size = calibration_batch_size(max_batch)  # the profile's optimum: TensorRT calibrates at that shape
    per_video = calibration_windows_per_video(calib_batches, batch_size, len(videos))
    batches = calibration_batches(videos, bundle, network, batch_size=batch_size, max_batches=calib_batches,
                                  windows_per_video=per_video)
    return videos, batch_size, batches


def _calibrator(bundle, network, digest, calib, calib_videos, calib_batches, max_batch):
    from engines.calibration import calibration_cache_path, make_calibrator

    videos, batch_size, batches = calibration_inputs(bundle, network, calib, calib_videos, calib_batches, max_batch)
    cache = calibration_cache_path(plans_dir(bundle.path), network, digest, videos)
    calibrator = make_calibrator(batches, batch_size=batch_size, shape_chw=input_shape(bundle, network),
                                 cache_file=cache)
    return calibrator, f"implicit int8, {len(videos)} videos from {calib}, batches of {batch_size}, cache {cache.name}"


def network_build_mode(onnx_bytes: bytes, precision: str, calib: str | None) -> BuildMode:
    """build_mode for one network's ONNX bytes (Q/DQ detected from the graph itself)."""
    return build_mode(precision, qdq=onnx_has_qdq(onnx_bytes), have_calibration_data=bool(calib))


def check_flags(bundle: Bundle, precision: str, calib: str | None) -> list[BuildMode]:
    """Flag errors for this bundle (e.g. --int8 without --calib on a float network), before any GPU work."""
    return [network_build_mode(onnx_file(bundle, n).read_bytes(), precision, calib) for n in bundle_networks(bundle)]


def main(args) -> int:
    precision = precision_of(args)
    bundle = read_bundle(args.bundle)
    check_flags(bundle, precision, args.calib)  # flag errors first, then the one-line GPU message
    caps = detect_capabilities()
    require_tensorrt(caps, "build-engines")
    build_bundle_plans(bundle, precision=precision, max_batch=args.max_batch, workspace_mb=args.workspace,
                       device=args.device, calib=args.calib, calib_videos=args.calib_videos,
                       calib_batches=args.calib_batches, force=args.force)
    return 0
