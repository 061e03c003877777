"""The engine interface every backend implements (ONNX Runtime on CPU, TensorRT on GPU, Triton).

An engine is one compiled network with one or more inputs (bundle format 2: a conv-fusion graph
takes a frame and a flow_stack) and one (B, classes) logits output. The batch dimension is dynamic.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np


class Engine(Protocol):
    """A compiled network: a batch of each input in, class scores (logits) out."""

    backend: str  # e.g. "onnxruntime-cpu", "tensorrt"
    input_names: tuple[str, ...]  # the graph's inputs, in order
    input_shapes: tuple[tuple[int, ...], ...]  # per input, without the batch dimension: (C,H,W) or (C,T,H,W)
    input_dtypes: tuple[np.dtype, ...]
    input_shape: tuple[int, ...]  # input_shapes[0] (single-input callers)
    input_dtype: np.dtype  # input_dtypes[0]
    num_outputs: int  # number of classes
    max_batch: int  # largest batch run() accepts (0: unlimited)

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        """Run one (B, *input_shapes[i]) array per input, in order; return (B, num_outputs) float32 logits."""
        ...


class EngineUnavailable(RuntimeError):
    """A remote engine (Triton) cannot answer now: server down, unreachable or timed out.

    Transient by nature: the inference stage keeps running (stream.runtime.outage) and retries with
    backoff; local engines never raise it.
    """
