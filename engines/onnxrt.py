"""ONNX Runtime engine: the embedded CPU default."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from stream.core.errors import BundleError

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}


class OnnxRuntimeEngine:
    """One ONNX model in an ONNX Runtime session.

    threads: intra-op threads (0 lets ORT decide). On a 2-core box the pipeline runs
    capture/flow/inference side by side, so the default is 1 to avoid oversubscription.
    """

    def __init__(self, path: str | Path, *, threads: int = 1, providers: list[str] | None = None):
        import onnxruntime as ort

        path = Path(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=opts, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises several private exception types
            raise BundleError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from None
        inputs = self._session.get_inputs()
        outputs = self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise BundleError(f"{path}: expected one input and one output, found {len(inputs)} and {len(outputs)}")
        shape = inputs[0].shape
        if len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
            raise BundleError(f"{path}: input must be (batch, C, H, W) with fixed C, H, W; found {shape}")
        out_shape = outputs[0].shape
        if len(out_shape) != 2 or not isinstance(out_shape[1], int):
            raise BundleError(f"{path}: output must be (batch, classes); found {out_shape}")
        self.backend = "onnxruntime-" + self._session.get_providers()[0].replace("ExecutionProvider", "").lower()
        self.path = path
        self.input_shape = tuple(int(d) for d in shape[1:])
        self.input_dtype = np.dtype(_DTYPES.get(inputs[0].type, np.float32))
        self.num_outputs = int(out_shape[1])
        self.max_batch = shape[0] if isinstance(shape[0], int) else 0
        self._input_name = inputs[0].name
        self._output_name = outputs[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape[1:] != self.input_shape:
            raise ValueError(f"{self.path.name}: input {batch.shape[1:]} does not match {self.input_shape}")
        x = np.ascontiguousarray(batch, dtype=self.input_dtype)
        out = self._session.run([self._output_name], {self._input_name: x})[0]
        return out.astype(np.float32, copy=False)
