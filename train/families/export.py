"""Family checkpoints -> ONNX graphs (one input per window kind) -> a format-2 bundle.

Every graph: inputs named after their kinds, in the order of the bundle's `inputs` list, batch
dynamic, weights embedded, opset 18 (dynamo), output `logits`. Before anything is written, ONNX
Runtime is compared with torch on real windows of the extraction (fails above the tolerance);
`int8` is ONNX Runtime's static QDQ (per-channel int8 weights, uint8 activations) calibrated on
real windows, kept only when its top-1 agreement with fp32 reaches `min_agreement`.
bundle.toml comes from engines.bundle.write_bundle_toml (the project's one bundle writer).
"""
from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from train.families.data import history, window_arrays
from train.onnx_export import OPSET, OUTPUT_NAME, ExportError, ort_session


def export_graph(model: nn.Module, path: str | Path, kinds, shapes: dict[str, tuple[int, ...]]) -> Path:
    """Write `model` (eval) as ONNX with one float32 input per kind (batch dynamic) and output `logits`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    examples = tuple(torch.zeros((2, *shapes[k]), dtype=torch.float32) for k in kinds)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, examples, dynamo=True, input_names=list(kinds), output_names=[OUTPUT_NAME],
                                    dynamic_shapes=tuple({0: batch} for _ in kinds), opset_version=OPSET,
                                    external_data=False, optimize=True, verbose=False)
    program.save(str(path), external_data=False)
    if path.with_name(path.name + ".data").exists():
        raise ExportError(f"{path}: exporter wrote external weights")
    return path


def input_shapes(kinds, size: int, params: dict) -> dict[str, tuple[int, ...]]:
    """Per-window input shape (no batch) of each kind (bundle format 2)."""
    L, T, Ls = params["flow_length"], params["clip_length"], params["stack_length"]
    all_shapes = {"frame": (3, size, size), "flow_stack": (2 * L, size, size), "clip": (3, T, size, size),
                  "frame_stack": (3 * (Ls + 1), size, size)}
    return {k: all_shapes[k] for k in kinds}


def run_onnx(session, inputs: dict[str, np.ndarray], batch: int = 16) -> np.ndarray:
    n = len(next(iter(inputs.values())))
    outs = []
    for i in range(0, n, batch):
        outs.append(session.run([OUTPUT_NAME], {k: np.ascontiguousarray(v[i:i + batch]) for k, v in inputs.items()})[0])
    return np.concatenate(outs)


def torch_logits(model: nn.Module, inputs: dict[str, np.ndarray], kinds, batch: int = 16) -> np.ndarray:
    n = len(inputs[kinds[0]])
    outs = []
    with torch.no_grad():
        for i in range(0, n, batch):
            outs.append(model(*[torch.from_numpy(np.ascontiguousarray(inputs[k][i:i + batch])) for k in kinds]).numpy())
    return np.concatenate(outs)


def parity(model: nn.Module, path: Path, inputs: dict[str, np.ndarray], kinds, tolerance: float,
           name: str = "") -> float:
    """Max |ORT - torch| logit difference on real inputs; ExportError (naming network `name`) above tolerance."""
    expected = torch_logits(model.eval(), inputs, kinds)
    got = run_onnx(ort_session(path), inputs)
    diff = float(np.max(np.abs(expected - got)))
    if not np.isfinite(diff) or diff > tolerance:
        raise ExportError(f"{name or path}: ONNX Runtime differs from torch by {diff:.3g} in the logits on "
                          f"{len(expected)} real windows (--tolerance {tolerance:g})")
    return diff


def real_windows(extracted: str | Path, index: dict, kinds, params: dict, count: int, mean, std, seed: int = 0,
                 rels: list[str] | None = None) -> dict[str, np.ndarray]:
    """`count` windows spread over the extraction's videos (or `rels`), built as the runtime builds them."""
    from stream.core.offline import window_ends
    from train.extract import load_video

    entries = [index["videos"][r] for r in (rels or sorted(index["videos"]))]
    rng = np.random.default_rng(seed)
    rng.shuffle(entries)
    need = history(kinds, **params)
    per_video = max(1, -(-count // max(1, len(entries))))
    out: dict[str, list] = {k: [] for k in kinds}
    n = 0
    for entry in entries:
        frames, flows = load_video(extracted, entry, frames=True, flows="flow_stack" in kinds)
        for e in window_ends(len(frames), need - 1, per_video):
            w = window_arrays(frames, flows, e, kinds, mean=mean, std=std, stacking=index["flow"]["stacking"], **params)
            for k in kinds:
                out[k].append(w[k])
            n += 1
        if n >= count:
            break
    return {k: np.stack(v)[:count] for k, v in out.items()}


def run_training_videos(meta: dict, index: dict) -> list[str]:
    """The videos (rel paths) a family run trained on: int8 calibration and its agreement check use only these.

    Runs record them (meta "train_items"); older runs recorded the validation videos and the count of
    training videos: the extraction's other videos, accepted only when their count matches (else
    ConfigError: calibrating on videos of unknown role could leak the held-out actors).
    """
    from stream.core.errors import ConfigError

    videos = sorted(index["videos"])
    if meta.get("train_items") is not None:
        chosen = sorted(meta["train_items"])
    else:
        val = set(meta.get("val_videos") or [])
        chosen = [v for v in videos if v not in val]
        if "train_videos" not in meta or len(chosen) != int(meta["train_videos"]):
            raise ConfigError(f"cannot tell which videos the run was trained on (split {meta.get('split', '?')!r}: "
                              f"{len(chosen)} non-validation videos, {meta.get('train_videos', '?')} recorded)")
    missing = [v for v in chosen if v not in index["videos"]]
    if missing or not chosen:
        raise ConfigError(f"the run's training videos are not in the extraction ({missing[:3]}...)")
    return chosen


class _Reader:
    def __init__(self, data: dict[str, np.ndarray], batch: int = 8):
        self.data, self.batch, self.pos = data, batch, 0
        self.n = len(next(iter(data.values())))

    def get_next(self):
        if self.pos >= self.n:
            return None
        out = {k: np.ascontiguousarray(v[self.pos:self.pos + self.batch], dtype=np.float32)
               for k, v in self.data.items()}
        self.pos += self.batch
        return out

    def rewind(self):
        self.pos = 0


def nodes_before(onnx_path: str | Path, submodule: str) -> list[str]:
    """Names of the nodes (in the graph's topological order) before the first one that torch's exporter
    attributed to `submodule` (its `namespace` metadata reads ".../<submodule>: pkg.Class/..."); [] for "".
    ExportError when no node belongs to `submodule`."""
    import onnx

    if not submodule:
        return []
    model = onnx.load(str(onnx_path), load_external_data=False)
    tag = f"/{submodule}: "
    names = []
    for node in model.graph.node:
        if any(p.key == "namespace" and tag in p.value for p in node.metadata_props):
            return names
        names.append(node.name)
    raise ExportError(f"{onnx_path}: no node of submodule {submodule!r}")


def quantize_int8(fp32_path: str | Path, out_path: str | Path, calibration: dict[str, np.ndarray], *,
                  keep_fp32: list[str] | tuple[str, ...] = ()) -> Path:
    """Static QDQ int8 of a multi-input graph (train.quantize's settings), calibrated on real windows;
    the nodes named in `keep_fp32` stay fp32."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        target = Path(tmp) / "q.onnx"
        quantize_static(str(pre), str(target), _Reader(calibration), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=list(keep_fp32),
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        shutil.move(str(target), out_path)
    return Path(out_path)


def export_network(model: nn.Module, out_dir: Path, name: str, kinds, size: int, params: dict,
                   check: dict[str, np.ndarray], calibration: dict[str, np.ndarray] | None, *, quantize: str = "none",
                   tolerance: float = 1e-3, min_agreement: float = 0.9, int8_from: str = "") -> dict:
    """Export one network to out_dir/<name>.onnx (int8 when asked and good enough; with `int8_from`, the
    nodes before that submodule stay fp32 in it); returns its report."""
    file = out_dir / f"{name}.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_graph(model, Path(tmp) / "fp32.onnx", kinds, input_shapes(kinds, size, params))
        report = {"name": name, "inputs": list(kinds),
                  "parity_max_abs": parity(model, fp32, check, kinds, tolerance, name),
                  "parity_windows": int(len(check[kinds[0]])), "precision": "fp32"}
        if quantize == "int8":
            keep = nodes_before(fp32, int8_from)
            q = quantize_int8(fp32, Path(tmp) / "int8.onnx", calibration or check, keep_fp32=keep)
            if keep:
                report.update(int8_from=int8_from, int8_fp32_nodes=len(keep))
            ref = run_onnx(ort_session(fp32), check)
            got = run_onnx(ort_session(q), check)
            agreement = float(np.mean(ref.argmax(1) == got.argmax(1)))
            report.update(int8_top1_agreement=agreement, int8_max_abs=float(np.max(np.abs(ref - got))))
            if agreement >= min_agreement:
                shutil.move(str(q), file)
                report["precision"] = "int8"
            else:
                shutil.move(str(fp32), file)
                report["int8_rejected"] = f"top-1 agreement {agreement:.3f} < {min_agreement}"
        else:
            shutil.move(str(fp32), file)
    report["bytes"] = file.stat().st_size
    return report


def network_entry(name: str, kinds, params: dict) -> dict:
    """The [[networks]] table of one graph (bundle format 2)."""
    entry = {"name": name, "file": f"{name}.onnx", "inputs": list(kinds)}
    if "clip" in kinds:
        entry.update(clip_length=params["clip_length"], clip_stride=params["clip_stride"])
    if "frame_stack" in kinds:
        entry["stack_length"] = params["stack_length"]
    return entry


def write_bundle(out_dir: Path, *, family: str, arch: str, labels: list[str], input_size: int, mean, std, flow: dict,
                 flow_length: int, networks: list[dict], fusion: dict, provenance: dict) -> Path:
    """labels.txt + bundle.toml (format 2) through engines.bundle.write_bundle_toml."""
    import inspect

    from engines.bundle import write_bundle_toml
    from stream.core.flow import FlowSettings

    if "networks" not in inspect.signature(write_bundle_toml).parameters:
        raise ExportError("engines.bundle.write_bundle_toml has no format-2 writer yet (networks=...)")
    (out_dir / "labels.txt").write_text("".join(f"{c}\n" for c in labels), encoding="utf-8")
    needs_flow = any("flow_stack" in n["inputs"] for n in networks)
    settings = FlowSettings(**flow) if needs_flow else None
    return write_bundle_toml(out_dir, input_size=input_size, mean=mean, std=std, flow=settings,
                             flow_length=flow_length if needs_flow else 0, arch=arch, provenance=provenance,
                             networks=networks, family=family, fusion=fusion)
