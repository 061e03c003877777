"""Shrink an exported fp32 ONNX model: static int8 QDQ (ONNX Runtime, calibrated on real inputs) or fp16 weights.

No torch here. int8 keeps float32 input/output, so the runtime feeds it exactly as before.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

QUANT_MODES = ("none", "int8", "fp16")


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over a (N, C, S, S) array, a few samples per call."""

    def __init__(self, input_name: str, data: np.ndarray, batch: int = 8):
        self.input_name, self.data, self.batch, self.pos = input_name, data, batch, 0

    def get_next(self):
        if self.pos >= len(self.data):
            return None
        x = self.data[self.pos:self.pos + self.batch]
        self.pos += self.batch
        return {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}

    def rewind(self):
        self.pos = 0


def quantize_int8(fp32_path: str | Path, out_path: str | Path, calibration: np.ndarray) -> Path:
    """Static QDQ int8 (per-channel weights, percentile-free MinMax activations) calibrated on real inputs."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    sess = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    del sess
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        target = Path(tmp) / "q.onnx"
        quantize_static(str(pre), str(target), _Reader(name, calibration), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        shutil.move(str(target), out_path)
    return out_path


def convert_fp16(fp32_path: str | Path, out_path: str | Path) -> Path:
    """fp16 weights and compute, float32 input/output kept (keep_io_types)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(fp32_path))
    model = convert_float_to_float16(model, keep_io_types=True)
    onnx.save(model, str(out_path))
    return Path(out_path)


def compare(reference_logits: np.ndarray, path: str | Path, inputs: np.ndarray) -> dict:
    """Max abs logit difference and top-1 agreement of an ONNX model against reference logits."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    got = np.concatenate([sess.run(None, {name: inputs[i:i + 16]})[0] for i in range(0, len(inputs), 16)])
    return {"max_abs_diff": float(np.max(np.abs(got - reference_logits))),
            "top1_agreement": float(np.mean(got.argmax(1) == reference_logits.argmax(1)))}
