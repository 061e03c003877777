"""ONNX Runtime engine: the embedded CPU default."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from stream.core.errors import BundleError

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}
MAX_INPUTS = 8


class OnnxRuntimeEngine:
    """One ONNX model in an ONNX Runtime session: 1..8 inputs (B, C, H, W) or (B, C, T, H, W), one output.

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
        if not 1 <= len(inputs) <= MAX_INPUTS or len(outputs) != 1:
            raise BundleError(f"{path}: expected 1..{MAX_INPUTS} inputs and one output, found {len(inputs)} "
                              f"and {len(outputs)}")
        batches = []
        for tensor in inputs:
            shape = tensor.shape
            if len(shape) not in (4, 5) or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
                raise BundleError(f"{path}: input {tensor.name!r} must be (batch, C, H, W) or (batch, C, T, H, W) "
                                  f"with fixed sizes; found {shape}")
            batches.append(shape[0])
        out_shape = outputs[0].shape
        if len(out_shape) != 2 or not isinstance(out_shape[1], int):
            raise BundleError(f"{path}: output must be (batch, classes); found {out_shape}")
        self.backend = "onnxruntime-" + self._session.get_providers()[0].replace("ExecutionProvider", "").lower()
        self.path = path
        self.input_names = tuple(t.name for t in inputs)
        self.input_shapes = tuple(tuple(int(d) for d in t.shape[1:]) for t in inputs)
        self.input_dtypes = tuple(np.dtype(_DTYPES.get(t.type, np.float32)) for t in inputs)
        self.input_shape = self.input_shapes[0]
        self.input_dtype = self.input_dtypes[0]
        self.num_outputs = int(out_shape[1])
        fixed = [b for b in batches if isinstance(b, int)]
        self.max_batch = min(fixed) if fixed else 0
        self._input_name = inputs[0].name
        self._output_name = outputs[0].name

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        if len(inputs) != len(self.input_shapes):
            raise ValueError(f"{self.path.name}: {len(inputs)} input(s) given, the network takes "
                             f"{len(self.input_shapes)}")
        if len(inputs) == 1:  # the two-stream path: no dict building beyond the one entry
            batch = inputs[0]
            if batch.shape[1:] != self.input_shape:
                raise ValueError(f"{self.path.name}: input {batch.shape[1:]} does not match {self.input_shape}")
            feed = {self._input_name: np.ascontiguousarray(batch, dtype=self.input_dtype)}
        else:
            feed = {}
            n = len(inputs[0])
            specs = zip(self.input_names, self.input_shapes, self.input_dtypes, inputs, strict=True)
            for name, shape, dtype, x in specs:
                if x.shape[1:] != shape or len(x) != n:
                    raise ValueError(f"{self.path.name}: input {name!r} {x.shape} does not match (B={n}, {shape})")
                feed[name] = np.ascontiguousarray(x, dtype=dtype)
        out = self._session.run([self._output_name], feed)[0]
        return out.astype(np.float32, copy=False)
