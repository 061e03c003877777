"""torch -> ONNX with the batch dimension dynamic and weights embedded, checked against ONNX Runtime.

Used by `twostream export` and by train.testing.make_tiny_bundle, so the tests exercise the
same export the shipped model went through.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stream.core.errors import TwostreamError

OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class ExportError(TwostreamError, RuntimeError):
    """An export that must not be written (the CLI prints it as one line: twostream <command>: error: ...)."""


def export_onnx(model: nn.Module, path: str | Path, input_shape: tuple[int, int, int]) -> Path:
    """Write `model` (eval mode) as ONNX: input (B, C, S, S) float32 -> logits (B, classes); B dynamic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = torch.zeros((2, *input_shape), dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            opset_version=OPSET,
            external_data=False,
            optimize=True,
            verbose=False,
        )
    program.save(str(path), external_data=False)
    data = path.with_name(path.name + ".data")
    if data.exists():  # never ship split weights: the runtime refuses them
        raise ExportError(f"{path}: exporter wrote external weights {data.name}")
    return path


def ort_session(path: str | Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def parity_check(model: nn.Module, path: str | Path, inputs: np.ndarray, tolerance: float) -> float:
    """Run the same real inputs through torch and ONNX Runtime; return the max abs logit difference.

    Raises ExportError above `tolerance`: a bundle that disagrees with its checkpoint is never written.
    """
    model = model.eval()
    x = np.ascontiguousarray(inputs, dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    session = ort_session(path)
    got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    diff = float(np.max(np.abs(expected - got)))
    if not np.isfinite(diff) or diff > tolerance:
        raise ExportError(f"{path}: ONNX Runtime differs from torch by {diff:.3g} (tolerance {tolerance:g})")
    return diff


def export_bundle(out_dir: str | Path, *, spatial: nn.Module, temporal: nn.Module, labels: list[str], input_size: int,
                  flow_length: int, flow, mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0),
                  fusion_weights: dict[str, float] | None = None, arch: str = "", provenance: dict | None = None,
                  spatial_inputs: np.ndarray | None = None, temporal_inputs: np.ndarray | None = None,
                  tolerance: float = 1e-3) -> dict:
    """Export both streams, check parity on the given (real) inputs, write labels.txt and bundle.toml.

    Returns {"spatial": max_abs_diff, "temporal": max_abs_diff}. Inputs default to random ones
    in the networks' input range when none are given (tests with untrained nets).
    """
    from engines.bundle import write_bundle_toml

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fusion_weights = fusion_weights or {"spatial": 1.0, "temporal": 1.5}
    rng = np.random.default_rng(0)
    shapes = {"spatial": (3, input_size, input_size), "temporal": (2 * flow_length, input_size, input_size)}
    given = {"spatial": spatial_inputs, "temporal": temporal_inputs}
    diffs = {}
    for key, model in (("spatial", spatial), ("temporal", temporal)):
        path = export_onnx(model, out / f"{key}.onnx", shapes[key])
        x = given[key]
        if x is None:
            x = rng.uniform(-1.0, 1.0, size=(2, *shapes[key])).astype(np.float32)
        diffs[key] = parity_check(model, path, x, tolerance)
    (out / "labels.txt").write_text("".join(f"{name}\n" for name in labels), encoding="utf-8")
    write_bundle_toml(out, input_size=input_size, mean=mean, std=std, flow=flow, flow_length=flow_length,
                      fusion_weights=fusion_weights, arch=arch, provenance=provenance or {})
    return diffs
