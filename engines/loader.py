"""One way to get engines: pick a backend (auto, onnxruntime, tensorrt) and load a bundle's two networks."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engines.base import Engine
from engines.bundle import Bundle, check_engines, read_bundle
from stream.core.errors import ConfigError

ENGINE_KINDS = ("auto", "onnxruntime", "tensorrt")


@dataclass
class LoadedBundle:
    bundle: Bundle
    spatial: Engine
    temporal: Engine
    choice: str = ""  # which backend was picked and why, for logs and status messages


def open_engine(path: str | Path, *, kind: str = "auto", threads: int = 1) -> Engine:
    """Load one network with the backend `kind` picks (see engines.capabilities.choose_engine).

    The returned engine carries `choice_reason`, a one-line explanation of the pick for logs
    and status messages. TensorRT plans are looked up in the bundle's plans/ directory.
    """
    if kind not in ENGINE_KINDS:
        raise ConfigError(f"engine = {kind!r}: expected one of {', '.join(ENGINE_KINDS)}")
    from engines.capabilities import choose_engine, detect_capabilities

    caps = detect_capabilities()
    plan = _usable_plan(Path(path), caps) if caps.tensorrt_ready and kind != "onnxruntime" else None
    if kind == "tensorrt" and plan is not None and not plan.usable:
        raise ConfigError(f"engine = 'tensorrt': {plan.message}")
    chosen, reason = choose_engine(kind, caps, None if plan is None else plan.usable)
    if plan is not None and not plan.usable:
        reason += f" [{plan.state}: {plan.message}]"  # say why a stale/foreign plan was passed over
    if chosen == "tensorrt":
        from engines.tensorrt import TensorRTEngine

        engine = TensorRTEngine(plan.path)
    else:
        from engines.onnxrt import OnnxRuntimeEngine

        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if chosen == "onnxruntime-cuda" else None
        engine = OnnxRuntimeEngine(path, threads=threads, providers=providers)
    engine.choice_reason = reason
    return engine


def _usable_plan(onnx_path: Path, caps):
    """PlanStatus of the best plan for this ONNX file on GPU 0, or None when the file is not a bundle network."""
    from engines.plans import NETWORKS, PlanKey, find_plan, sha256_file

    if onnx_path.stem not in NETWORKS or not caps.gpus:
        return None
    gpu = caps.gpus[0]
    want = PlanKey(network=onnx_path.stem, gpu_name=gpu.name, compute_capability=gpu.compute_capability,
                   tensorrt_version=caps.tensorrt_version, onnx_sha256=sha256_file(onnx_path), precision="fp32",
                   max_batch=1)
    return find_plan(onnx_path.parent, want, any_precision=True)


def open_bundle(path: str | Path, *, kind: str = "auto", threads: int = 1) -> LoadedBundle:
    """Read, validate and load a model bundle's spatial and temporal engines."""
    bundle = read_bundle(path)
    spatial = open_engine(bundle.spatial_file, kind=kind, threads=threads)
    temporal = open_engine(bundle.temporal_file, kind=kind, threads=threads)
    check_engines(bundle, spatial, temporal)
    reasons = {getattr(e, "choice_reason", "") for e in (spatial, temporal)}
    if spatial.backend == temporal.backend and len(reasons) == 1:
        choice = f"{spatial.backend} ({reasons.pop()})"
    else:
        choice = (f"spatial: {spatial.backend} ({getattr(spatial, 'choice_reason', '')}); "
                  f"temporal: {temporal.backend} ({getattr(temporal, 'choice_reason', '')})")
    return LoadedBundle(bundle=bundle, spatial=spatial, temporal=temporal, choice=choice)
