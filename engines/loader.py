"""One way to get engines: pick a backend (auto, onnxruntime, tensorrt) and load a bundle's two networks."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engines.base import Engine
from engines.bundle import Bundle, check_engines, read_bundle
from stream.errors import ConfigError

ENGINE_KINDS = ("auto", "onnxruntime", "tensorrt")


@dataclass
class LoadedBundle:
    bundle: Bundle
    spatial: Engine
    temporal: Engine


def open_engine(path: str | Path, *, kind: str = "auto", threads: int = 1) -> Engine:
    """Load one network. 'auto' means ONNX Runtime on CPU until the GPU backend slots in here."""
    if kind not in ENGINE_KINDS:
        raise ConfigError(f"engine = {kind!r}: expected one of {', '.join(ENGINE_KINDS)}")
    if kind == "tensorrt":
        raise ConfigError("engine = 'tensorrt' needs an NVIDIA GPU with driver and `pip install twostream[gpu]`")
    from engines.onnxrt import OnnxRuntimeEngine

    return OnnxRuntimeEngine(path, threads=threads)


def open_bundle(path: str | Path, *, kind: str = "auto", threads: int = 1) -> LoadedBundle:
    """Read, validate and load a model bundle's spatial and temporal engines."""
    bundle = read_bundle(path)
    spatial = open_engine(bundle.spatial_file, kind=kind, threads=threads)
    temporal = open_engine(bundle.temporal_file, kind=kind, threads=threads)
    check_engines(bundle, spatial, temporal)
    return LoadedBundle(bundle=bundle, spatial=spatial, temporal=temporal)
