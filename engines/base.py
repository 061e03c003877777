"""The engine interface every backend implements (ONNX Runtime on CPU, TensorRT on GPU)."""
from __future__ import annotations

from typing import Protocol

import numpy as np


class Engine(Protocol):
    """A compiled network: a batch of inputs in, class scores (logits) out."""

    backend: str  # e.g. "onnxruntime-cpu", "tensorrt"
    input_shape: tuple[int, int, int]  # (C, H, W); the batch dimension is dynamic
    input_dtype: np.dtype
    num_outputs: int  # number of classes
    max_batch: int  # largest batch run() accepts (0: unlimited)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run (B, C, H, W) input and return (B, num_outputs) float32 logits."""
        ...
