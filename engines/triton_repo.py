"""A Triton Inference Server model repository from a model bundle (`twostream export-triton`).

One Triton model per bundle network (`<prefix>spatial`, `<prefix>temporal` for a two-stream bundle; any
network names of a format-2 bundle), laid out as Triton wants:

    REPO/<prefix>spatial/config.pbtxt          production config: onnxruntime_onnx (or tensorrt_plan)
    REPO/<prefix>spatial/configs/python.pbtxt  test-only variant (tritonserver --model-config-name=python):
                                               the python backend runs the same ONNX file with onnxruntime
    REPO/<prefix>spatial/labels.txt            the bundle's labels (label_filename of the output)
    REPO/<prefix>spatial/1/model.onnx          the bundle's network, byte for byte
    REPO/<prefix>spatial/1/model.plan          only when a TensorRT plan for the target GPU is exported
    REPO/<prefix>spatial/1/model.py            the python-backend implementation of the test variant

Inputs and outputs are named and shaped from the ONNX file itself (read with onnxruntime, no torch).
The config's `parameters` carry the SHA-256 of the ONNX file and of the labels so a client (the
`triton` engine) can prove the server runs exactly the local bundle's networks before trusting it.

Export is idempotent: an identical model already in REPO is left untouched; a different model of the
same name is refused unless force=True, so a shared repository is never overwritten by mistake.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engines.bundle import read_bundle
from engines.plans import read_sidecar, sha256_file
from stream.core.errors import BundleError, ConfigError

VERSION = "1"
PYTHON_VARIANT = "python"  # tritonserver --model-config-name=python selects configs/python.pbtxt
PARAM_ONNX_SHA = "twostream_onnx_sha256"
PARAM_LABELS_SHA = "twostream_labels_sha256"
PARAM_NETWORK = "twostream_network"
_TRITON_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16", "tensor(uint8)": "TYPE_UINT8"}
MARKER = "# written by `twostream export-triton`"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str  # Triton's TYPE_FP32 ...
    dims: tuple[int, ...]  # without the batch dimension


@dataclass(frozen=True)
class NetworkSpec:
    """What a Triton model of one bundle network must look like (also what the triton engine checks)."""

    network: str
    inputs: tuple[TensorSpec, ...]  # in the graph's order
    output: TensorSpec
    onnx_sha256: str
    labels_sha256: str


def labels_sha256(labels) -> str:
    return hashlib.sha256("\n".join(labels).encode("utf-8")).hexdigest()


def network_spec(onnx_path: Path, network: str, labels) -> NetworkSpec:
    """Names, types and shapes of an ONNX network's inputs and its single output, plus its content hashes."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # metadata only: load fast
    try:
        session = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises several private exception types
        raise BundleError(f"{onnx_path}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if not inputs or len(outputs) != 1:
        raise BundleError(f"{onnx_path}: expected inputs and one output, found {len(inputs)} and {len(outputs)}")
    out = outputs[0]
    for t in (*inputs, out):
        if isinstance(t.shape[0], int):
            raise BundleError(f"{onnx_path}: {t.name} has a fixed batch dimension ({t.shape}); Triton's batching "
                              f"needs a dynamic one (re-export the bundle)")
        if t.type not in _TRITON_TYPES or not all(isinstance(d, int) for d in t.shape[1:]):
            raise BundleError(f"{onnx_path}: {t.name} is {t.type} {t.shape}; expected float with fixed dims")
    return NetworkSpec(
        network=network,
        inputs=tuple(TensorSpec(t.name, _TRITON_TYPES[t.type], tuple(int(d) for d in t.shape[1:])) for t in inputs),
        output=TensorSpec(out.name, _TRITON_TYPES[out.type], tuple(int(d) for d in out.shape[1:])),
        onnx_sha256=sha256_file(onnx_path),
        labels_sha256=labels_sha256(labels),
    )


def _q(text: str) -> str:
    return json.dumps(text)  # a protobuf text-format string literal (ASCII-escaped, double quotes)


def model_config(name: str, spec: NetworkSpec, *, platform: str = "", backend: str = "", max_batch: int,
                 queue_delay_us: int, kind: str, count: int = 1, source: str = "") -> str:
    """config.pbtxt text (protobuf text format) for one network."""
    lines = [MARKER + (f" from {source}" if source else "") + "; re-export instead of editing",
             f"name: {_q(name)}"]
    lines.append(f"platform: {_q(platform)}" if platform else f"backend: {_q(backend)}")
    lines += [
        f"max_batch_size: {int(max_batch)}",
        "input [",
        ",\n".join("\n".join(["  {", f"    name: {_q(t.name)}", f"    data_type: {t.data_type}",
                                f"    dims: [ {', '.join(str(d) for d in t.dims)} ]", "  }"]) for t in spec.inputs),
        "]",
        "output [",
        "  {",
        f"    name: {_q(spec.output.name)}",
        f"    data_type: {spec.output.data_type}",
        f"    dims: [ {', '.join(str(d) for d in spec.output.dims)} ]",
        '    label_filename: "labels.txt"',
        "  }",
        "]",
        "dynamic_batching {",
        f"  max_queue_delay_microseconds: {int(queue_delay_us)}",
        "}",
        "instance_group [",
        "  {",
        f"    count: {int(count)}",
        f"    kind: {'KIND_GPU' if kind == 'gpu' else 'KIND_CPU'}",
        "  }",
        "]",
    ]
    for key, value in ((PARAM_NETWORK, spec.network), (PARAM_ONNX_SHA, spec.onnx_sha256),
                       (PARAM_LABELS_SHA, spec.labels_sha256)):
        lines.append(f"parameters {{ key: {_q(key)} value: {{ string_value: {_q(value)} }} }}")
    return "\n".join(lines) + "\n"


# The python-backend implementation of the test variant: runs model.onnx beside it with onnxruntime and
# answers every request of a (dynamically) batched execution from ONE session call.
MODEL_PY = '''"""twostream test-only Triton model (python backend): the same ONNX file, run with onnxruntime.

Written by `twostream export-triton`; selected with `tritonserver --model-config-name=python`.
Production uses config.pbtxt (onnxruntime_onnx / tensorrt_plan backends) instead.
"""
import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input_names = [t["name"] for t in config["input"]]
        self.output_name = config["output"][0]["name"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(os.environ.get("TWOSTREAM_TRITON_THREADS", "1"))
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        per_request = [[pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.input_names]
                       for r in requests]
        feed = {name: (per_request[0][k] if len(requests) == 1 else np.concatenate([a[k] for a in per_request]))
                for k, name in enumerate(self.input_names)}
        out = self.session.run([self.output_name], feed)[0].astype(np.float32)
        responses, start = [], 0
        for arrays in per_request:
            n = arrays[0].shape[0]
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output_name, out[start:start + n])]))
            start += n
        return responses
'''


def bundle_networks(bundle) -> list[tuple[str, Path]]:
    """(name, ONNX file) of every network: format-2 bundles list them, format 1 has spatial and temporal."""
    networks = getattr(bundle, "networks", None)
    if networks:
        return [(net.name, Path(net.file)) for net in networks]
    return [("spatial", bundle.spatial_file), ("temporal", bundle.temporal_file)]


@dataclass
class ExportResult:
    repo: Path
    models: dict[str, str]  # model name -> "written" | "unchanged" | "replaced"
    platform: dict[str, str]  # model name -> platform of the production config


def _find_plan(bundle_dir: Path, network: str, onnx_sha: str, gpu: str) -> Path | None:
    """Newest plan in BUNDLE/plans built from this exact ONNX file for a GPU whose name contains `gpu`."""
    directory = bundle_dir / "plans"
    if not gpu or not directory.is_dir():
        return None
    for path in sorted(directory.glob(f"{network}-*.plan"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            key, digest = read_sidecar(path)
        except ValueError:
            continue
        if gpu.lower() in key.gpu_name.lower() and key.onnx_sha256 == onnx_sha and sha256_file(path) == digest:
            return path
    return None


def _model_files(name: str, spec: NetworkSpec, onnx_path: Path, labels, *, max_batch: int, queue_delay_us: int,
                 kind: str, count: int, plan: Path | None, source: str) -> tuple[dict[str, bytes], str]:
    platform = "tensorrt_plan" if plan is not None else "onnxruntime_onnx"
    files = {
        "config.pbtxt": model_config(name, spec, platform=platform, max_batch=max_batch, queue_delay_us=queue_delay_us,
                                     kind=kind, count=count, source=source).encode(),
        f"configs/{PYTHON_VARIANT}.pbtxt": model_config(name, spec, backend="python", max_batch=max_batch,
                                                        queue_delay_us=queue_delay_us, kind="cpu", count=1,
                                                        source=source).encode(),
        "labels.txt": ("\n".join(labels) + "\n").encode("utf-8"),
        f"{VERSION}/model.onnx": onnx_path.read_bytes(),
        f"{VERSION}/model.py": MODEL_PY.encode(),
    }
    if plan is not None:
        files[f"{VERSION}/model.plan"] = plan.read_bytes()
    return files, platform


def _same_tree(directory: Path, files: dict[str, bytes]) -> bool:
    present = {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}
    if present != set(files):
        return False
    return all((directory / rel).read_bytes() == data for rel, data in files.items())


def export_triton(bundle_path: str | Path, repo: str | Path, *, prefix: str = "twostream_", max_batch: int = 16,
                  queue_delay_us: int = 500, kind: str = "gpu", count: int = 1, tensorrt_gpu: str = "",
                  force: bool = False) -> ExportResult:
    """Write (or verify) the bundle's two networks as Triton models in `repo`."""
    if kind not in ("gpu", "cpu"):
        raise ConfigError(f"--kind {kind!r}: expected gpu or cpu")
    if not 1 <= max_batch <= 4096:
        raise ConfigError(f"--max-batch {max_batch}: expected 1..4096")
    if not 0 <= queue_delay_us <= 10_000_000:
        raise ConfigError(f"--queue-delay-us {queue_delay_us}: expected 0..10000000")
    if not 1 <= count <= 64:
        raise ConfigError(f"--instances {count}: expected 1..64")
    if not prefix or not all(c.isalnum() or c in "_-." for c in prefix):
        raise ConfigError(f"--prefix {prefix!r}: use letters, digits, _ - . only (it names directories)")
    bundle = read_bundle(bundle_path)
    repo = Path(repo)
    if repo.exists() and not repo.is_dir():
        raise ConfigError(f"{repo}: exists and is not a directory")
    repo.mkdir(parents=True, exist_ok=True)
    result = ExportResult(repo=repo, models={}, platform={})
    planned = []
    for network, onnx_path in bundle_networks(bundle):
        spec = network_spec(onnx_path, network, bundle.labels)
        if spec.output.dims != (bundle.num_classes,):
            raise BundleError(f"{onnx_path}: output {spec.output.dims} does not match {bundle.num_classes} labels")
        name = prefix + network
        plan = _find_plan(bundle.path, network, spec.onnx_sha256, tensorrt_gpu)
        if tensorrt_gpu and plan is None:
            raise BundleError(f"{bundle.path}/plans: no valid {network} plan built from this {onnx_path.name} for a "
                              f"GPU matching {tensorrt_gpu!r} (run `twostream build-engines` on that GPU)")
        files, platform = _model_files(name, spec, onnx_path, bundle.labels, max_batch=max_batch,
                                       queue_delay_us=queue_delay_us, kind=kind, count=count, plan=plan,
                                       source=bundle.path.name)
        target = repo / name
        if target.exists():
            if _same_tree(target, files):
                state = "unchanged"
            elif not force:
                raise BundleError(f"{target}: a different model named {name!r} is already in the repository "
                                  f"(use --force to replace it, or --prefix for another name)")
            else:
                state = "replaced"
        else:
            state = "written"
        planned.append((name, target, files, state))
        result.platform[name] = platform
    for name, target, files, state in planned:  # write only once both networks passed every check
        result.models[name] = state
        if state == "unchanged":
            continue
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repo))
        for rel, data in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
        tmp.chmod(0o755)
        if target.exists():
            old = target.with_name(f".{name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    return result
