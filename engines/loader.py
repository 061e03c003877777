"""One way to get engines: pick a backend (auto, onnxruntime, tensorrt, triton) and load every network of a bundle."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engines.base import Engine
from engines.bundle import Bundle, check_networks, read_bundle
from stream.core.errors import BundleError, ConfigError

ENGINE_KINDS = ("auto", "onnxruntime", "tensorrt", "triton")


@dataclass
class LoadedBundle:
    bundle: Bundle
    engines: dict[str, Engine]  # one per network name, in the bundle's order
    choice: str = ""  # which backend was picked and why, for logs and status messages

    def _named(self, name: str) -> Engine:
        if name not in self.engines:
            raise BundleError(f"{self.bundle.path}: family {self.bundle.family!r} has no {name!r} network "
                              f"(networks: {', '.join(self.engines)})")
        return self.engines[name]

    @property
    def spatial(self) -> Engine:
        """The two-stream views (format 1 and late bundles with these names)."""
        return self._named("spatial")

    @property
    def temporal(self) -> Engine:
        return self._named("temporal")

    @property
    def backend(self) -> str:
        return next(iter(self.engines.values())).backend


def open_engine(path: str | Path, *, kind: str = "auto", threads: int = 1, network: str | None = None) -> Engine:
    """Load one network with the backend `kind` picks (see engines.capabilities.choose_engine).

    The returned engine carries `choice_reason`, a one-line explanation of the pick for logs
    and status messages. TensorRT plans are looked up in the bundle's plans/ directory under
    `network` (the bundle's network name; default: the file's stem when it is spatial or temporal).
    """
    if kind not in ENGINE_KINDS or kind == "triton":
        raise ConfigError(f"engine = {kind!r}: expected one of {', '.join(k for k in ENGINE_KINDS if k != 'triton')}")
    from engines.capabilities import choose_engine, detect_capabilities

    caps = detect_capabilities()
    plan = _usable_plan(Path(path), caps, network) if caps.tensorrt_ready and kind != "onnxruntime" else None
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


def _usable_plan(onnx_path: Path, caps, network: str | None = None):
    """PlanStatus of the best plan for this ONNX file on GPU 0, or None when the file is not a bundle network."""
    from engines.plans import NETWORKS, PlanKey, find_plan, sha256_file

    name = network or (onnx_path.stem if onnx_path.stem in NETWORKS else None)
    if name is None or not caps.gpus:
        return None
    gpu = caps.gpus[0]
    want = PlanKey(network=name, gpu_name=gpu.name, compute_capability=gpu.compute_capability,
                   tensorrt_version=caps.tensorrt_version, onnx_sha256=sha256_file(onnx_path), precision="fp32",
                   max_batch=1)
    return find_plan(onnx_path.parent, want, any_precision=True)


def open_bundle(path: str | Path, *, kind: str = "auto", threads: int = 1, options=None,
                verify_remote: bool = True) -> LoadedBundle:
    """Read, validate and load every network of a model bundle (format 1: spatial and temporal).

    kind = "triton": the networks run on a Triton server named by `options` ([engine] settings);
    verify_remote=False lets an inference stage that restarts during an outage start anyway
    (the engine verifies the server before its first batch).
    """
    bundle = read_bundle(path)
    engines: dict[str, Engine] = {}
    for net in bundle.networks:
        if kind == "triton":
            from engines.triton import open_triton

            engines[net.name] = open_triton(bundle, net.name, options, verify=verify_remote)
        else:
            engines[net.name] = open_engine(net.file, kind=kind, threads=threads, network=net.name)
    check_networks(bundle, engines)
    backends = {e.backend for e in engines.values()}
    reasons = {getattr(e, "choice_reason", "") for e in engines.values()}
    if len(backends) == 1 and len(reasons) == 1:
        choice = f"{backends.pop()} ({reasons.pop()})"
    else:
        choice = "; ".join(f"{name}: {e.backend} ({getattr(e, 'choice_reason', '')})" for name, e in engines.items())
    return LoadedBundle(bundle=bundle, engines=engines, choice=choice)
