"""List what this machine can use: ONNX Runtime providers, TensorRT, pycuda, CUDA devices,
OpenCV CUDA and its flow classes, every flow backend, and the engine `auto` would pick.

--gpu-selftest [BUNDLE] (NVIDIA GPU only): builds FP32 and FP16 TensorRT plans for the bundle,
runs windows of a real clip through TensorRT and through ONNX Runtime on the CPU, prints the
largest score difference and the throughput of each, and exits 1 when TensorRT's scores
differ beyond tolerance. This is the one command that verifies the GPU path.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from engines.capabilities import Capabilities, choose_engine, detect_capabilities, require_tensorrt
from stream.core.errors import ConfigError
from stream.core.fusion import softmax

DEFAULT_CLIP = Path("assets/demo.mp4")
TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2}  # max |difference| of softmax scores vs ONNX Runtime CPU


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--bundle", help="also report TensorRT plan status for this bundle")
    parser.add_argument("--gpu-selftest", nargs="?", const="models/default", metavar="BUNDLE",
                        help="build TensorRT plans for BUNDLE (default models/default) and compare with ONNX Runtime")
    parser.add_argument("--clip", help=f"video for the self-test (default {DEFAULT_CLIP})")
    parser.add_argument("--max-batch", type=int, default=16, help="self-test plan max batch (16)")
    parser.add_argument("--windows", type=int, default=64, help="self-test windows taken from the clip (64)")


def _plan_report(bundle_dir: str, caps: Capabilities) -> dict:
    from engines.bundle import read_bundle
    from engines.loader import _usable_plan

    bundle = read_bundle(bundle_dir)
    out = {}
    for network, path in (("spatial", bundle.spatial_file), ("temporal", bundle.temporal_file)):
        status = _usable_plan(path, caps) if caps.tensorrt_ready else None
        out[network] = {"state": status.state, "message": status.message} if status else \
            {"state": "unchecked", "message": "TensorRT unavailable here"}
    return out


def report(caps: Capabilities, bundle_dir: str | None = None) -> dict:
    plans = _plan_report(bundle_dir, caps) if bundle_dir else None
    usable = None if plans is None else all(p["state"] == "ok" for p in plans.values())
    kind, reason = choose_engine("auto", caps, usable)
    doc = caps.as_dict()
    doc["flow_backends"] = {"cpu": list(caps.cpu_flow_backends), "cuda": list(caps.opencv_cuda_flow)}
    doc["auto_engine"] = kind
    doc["auto_reason"] = reason
    if plans is not None:
        doc["plans"] = plans
    return doc


def format_text(doc: dict) -> str:
    def have(value, problem):
        return value if value else f"not available ({problem or 'not installed'})"

    gpus = ", ".join(f"#{g['index']} {g['name']} (sm {g['compute_capability']}, {g['memory_mib']} MiB)"
                     for g in doc["gpus"]) or f"none ({doc['gpu_problem']})"
    cuda_flow = ", ".join(doc["flow_backends"]["cuda"]) or "none"
    lines = [
        f"ONNX Runtime providers : {', '.join(doc['ort_providers']) or 'onnxruntime not importable'}",
        f"TensorRT               : {have(doc['tensorrt_version'], doc['tensorrt_problem'])}",
        f"pycuda                 : {have(doc['pycuda_version'], doc['pycuda_problem'])}",
        f"CUDA devices           : {gpus}",
        f"OpenCV                 : {doc['opencv_version']}, CUDA devices {doc['opencv_cuda_devices']}",
        f"flow backends (CPU)    : {', '.join(doc['flow_backends']['cpu'])}",
        f"flow backends (CUDA)   : {cuda_flow}",
    ]
    for network, plan in (doc.get("plans") or {}).items():
        lines.append(f"TensorRT plan {network:9}: {plan['state']} - {plan['message']}")
    lines.append(f"engine 'auto' picks    : {doc['auto_engine']} ({doc['auto_reason']})")
    return "\n".join(lines)


def _timed_run(engine, x: np.ndarray, batch: int) -> tuple[np.ndarray, float]:
    engine.run(x[:batch])  # warm-up: first call allocates / autotunes
    start = time.perf_counter()
    out = np.concatenate([engine.run(x[i:i + batch]) for i in range(0, len(x), batch)])
    return out, len(x) / (time.perf_counter() - start)


def gpu_selftest(bundle_dir: str, clip: str | None, *, max_batch: int, windows: int, log=print) -> bool:
    """Build FP32 and FP16 plans, compare TensorRT with ONNX Runtime CPU on a real clip. True when all match."""
    caps = detect_capabilities()
    require_tensorrt(caps, "doctor --gpu-selftest")
    from engines.bundle import read_bundle
    from engines.cmd_build import build_bundle_plans
    from engines.onnxrt import OnnxRuntimeEngine
    from engines.tensorrt import TensorRTEngine
    from stream.core.offline import read_video, video_flows, window_ends, window_inputs

    bundle = read_bundle(bundle_dir)
    clip_path = Path(clip) if clip else DEFAULT_CLIP
    if not clip_path.is_file():
        raise ConfigError(f"self-test clip {str(clip_path)!r} not found; pass --clip VIDEO")
    frames = read_video(clip_path, bundle.input_size, max_frames=max(4 * windows, 64))
    flows = video_flows(frames, bundle.flow)
    ends = window_ends(len(frames), bundle.flow_length, windows)
    if not ends:
        raise ConfigError(f"{clip_path}: too short for one window of {bundle.flow_length} flows")
    inputs = dict(zip(("spatial", "temporal"), window_inputs(
        frames, flows, ends, flow_length=bundle.flow_length, mean=bundle.mean, std=bundle.std,
        stacking=bundle.flow.stacking), strict=True))
    log(f"self-test: {bundle.path} on {caps.gpus[0].name}, {len(ends)} windows from {clip_path}")

    reference, rates = {}, {}
    for network, path in (("spatial", bundle.spatial_file), ("temporal", bundle.temporal_file)):
        logits, rates[("onnxruntime-cpu", network)] = _timed_run(OnnxRuntimeEngine(path, threads=0),
                                                                 inputs[network], max_batch)
        reference[network] = softmax(logits)
    weights = bundle.fusion_weights
    total = weights["spatial"] + weights["temporal"]

    def fused(scores):
        return (weights["spatial"] * scores["spatial"] + weights["temporal"] * scores["temporal"]) / total

    ok = True
    for precision in ("fp32", "fp16"):
        results = build_bundle_plans(bundle, precision=precision, max_batch=max_batch, workspace_mb=1024, log=log)
        scores = {}
        for result in results:
            engine = TensorRTEngine(result.path)
            try:
                logits, rates[(f"tensorrt-{precision}", result.network)] = _timed_run(
                    engine, inputs[result.network], max_batch)
            finally:
                engine.close()
            scores[result.network] = softmax(logits)
        for name in ("spatial", "temporal", "fused"):
            got = fused(scores) if name == "fused" else scores[name]
            want = fused(reference) if name == "fused" else reference[name]
            diff = float(np.abs(got - want).max())
            agree = float((got.argmax(1) == want.argmax(1)).mean())
            passed = diff <= TOLERANCE[precision]
            ok &= passed
            log(f"  {precision} {name:8}: max |score diff| {diff:.2e} (tolerance {TOLERANCE[precision]:.0e}), "
                f"top-1 agreement {agree:.1%} {'OK' if passed else 'MISMATCH'}")
    for (backend, network), rate in sorted(rates.items()):
        log(f"  throughput {backend:16} {network:8}: {rate:8.1f} windows/s (batch {max_batch})")
    log("self-test " + ("passed" if ok else "FAILED: TensorRT scores differ from ONNX Runtime beyond tolerance"))
    return ok


def main(args) -> int:
    if args.gpu_selftest:
        return 0 if gpu_selftest(args.gpu_selftest, args.clip, max_batch=args.max_batch, windows=args.windows) else 1
    doc = report(detect_capabilities(), args.bundle)
    print(json.dumps(doc, indent=2) if args.json else format_text(doc))
    return 0
