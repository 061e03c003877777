"""TensorRT plan cache inside a bundle: naming, sidecars and staleness rules.

A serialized TensorRT plan only runs on the GPU model and TensorRT version that built it,
and only means something for the exact ONNX file it was built from. Every plan therefore
lives at `BUNDLE/plans/<network>-<key>.plan` with a JSON sidecar recording the full key and
the plan's own SHA-256. A plan is loaded only when its sidecar matches this machine, the
current ONNX file and the plan bytes; anything else is reported as missing, stale, foreign
or corrupt with the reason, never loaded blindly.

Pure Python: no TensorRT needed, so these rules are tested on CPU machines.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from engines.bundle import Bundle
from stream.core.errors import ConfigError

PLANS_DIR = "plans"
PRECISIONS = ("fp32", "fp16", "int8")
NETWORKS = ("spatial", "temporal")  # format 1's networks; bundle_networks(bundle) gives any bundle's
MAX_SIDECAR_BYTES = 64 * 1024
MAX_PLAN_BYTES = 2 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class PlanKey:
    """Everything a plan depends on. Two plans with equal keys are interchangeable."""

    network: str  # spatial | temporal
    gpu_name: str
    compute_capability: str  # "8.6"
    tensorrt_version: str
    onnx_sha256: str
    precision: str  # fp32 | fp16 | int8
    max_batch: int

    def slug(self) -> str:
        """File-name-safe, human-readable and unique (the hash covers every field)."""
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]
        gpu = re.sub(r"[^a-z0-9]+", "-", self.gpu_name.lower()).strip("-")[:40] or "gpu"
        return (f"{self.network}-{self.precision}-b{self.max_batch}-{gpu}-sm{self.compute_capability.replace('.', '')}"
                f"-trt{self.tensorrt_version}-{digest}")

    def machine(self) -> tuple[str, str, str]:
        return (self.gpu_name, self.compute_capability, self.tensorrt_version)


@dataclass(frozen=True)
class PlanStatus:
    state: str  # ok | missing | stale | foreign | corrupt
    path: Path | None
    message: str

    @property
    def usable(self) -> bool:
        return self.state == "ok"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def onnx_file(bundle: Bundle, network: str) -> Path:
    """The ONNX file of a network of the bundle, by name (BundleError naming the networks when absent)."""
    return bundle.network(network).file


def input_shape(bundle: Bundle, network: str) -> tuple:
    """Input shape(s) the bundle declares for a network, without batch: (C, H, W) or (C, T, H, W) for a
    one-input network (spatial: RGB, temporal: 2L flow channels), a tuple of them for a multi-input one."""
    shapes = bundle.network(network).shapes(bundle.input_size)
    return shapes[0] if len(shapes) == 1 else shapes


def bundle_networks(bundle: Bundle) -> tuple[str, ...]:
    """The network names a plan can be built for: every network of the bundle (format 1: spatial, temporal)."""
    return tuple(net.name for net in bundle.networks)


def profile_shapes(shape_chw: tuple[int, int, int], max_batch: int,
                   opt_batch: int | None = None) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) input shapes of the one optimization profile: batch 1..max_batch.

    opt defaults to max_batch: the pipeline batches windows across cameras, and the batch
    fills up exactly when the box is loaded, which is when kernel choice matters.
    """
    if max_batch < 1:
        raise ValueError(f"max batch must be >= 1, got {max_batch}")
    opt = max_batch if opt_batch is None else opt_batch
    if not 1 <= opt <= max_batch:
        raise ValueError(f"opt batch must be in 1..{max_batch}, got {opt}")
    c, h, w = shape_chw
    return (1, c, h, w), (opt, c, h, w), (max_batch, c, h, w)


def calibration_batch_size(max_batch: int, opt_batch: int | None = None) -> int:
    """Windows per INT8 calibration batch: the calibration profile's optimum batch.

    TensorRT calibrates at the kOPT shape of the profile given to set_calibration_profile, so the
    calibrator must hand over batches of exactly that size (profile_shapes: opt = max_batch by default;
    a smaller batch, e.g. 8 against an optimum of 16, reads past the samples it copied).
    """
    return profile_shapes((1, 1, 1), max_batch, opt_batch)[1][0]


def calibration_windows_per_video(batches: int, batch_size: int, videos: int, minimum: int = 4) -> int:
    """Windows to sample per calibration video so that `batches` full batches can be filled."""
    if videos < 1:
        raise ValueError("no calibration videos")
    return max(minimum, -(-batches * batch_size // videos))


# ---- explicit (Q/DQ) vs implicit quantization ---------------------------------------------------------------

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated or malformed protobuf varint")
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes, start: int, end: int):
    """(field number, (start, end)) of the length-delimited fields of one protobuf message; others skipped."""
    i = start
    while i < end:
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > end:
                raise ValueError("truncated protobuf field")
            yield field, (i, i + n)
            i += n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    if i != end:
        raise ValueError("truncated protobuf message")


def _graph_ops(buf: bytes, start: int, end: int, ops: set[str], depth: int = 0) -> None:
    if depth > 16:
        raise ValueError("sub-graphs nested too deeply")
    for field, (a, b) in _fields(buf, start, end):
        if field != 1:  # GraphProto.node; initializers (5) are skipped by length, never decoded
            continue
        for nfield, (c, d) in _fields(buf, a, b):
            if nfield == 4:  # NodeProto.op_type
                ops.add(bytes(buf[c:d]).decode("utf-8", "replace"))
            elif nfield == 5:  # NodeProto.attribute: sub-graphs of If/Loop/Scan (g = 6, graphs = 11)
                for afield, (e, f) in _fields(buf, c, d):
                    if afield in (6, 11):
                        _graph_ops(buf, e, f, ops, depth + 1)


def onnx_op_types(onnx_bytes: bytes) -> set[str]:
    """Every node op_type in an ONNX model (main graph, sub-graphs, local functions).

    A minimal protobuf walk (ModelProto.graph = 7, functions = 25; GraphProto.node = 1; FunctionProto.node
    = 7; NodeProto.op_type = 4): the runtime side does not depend on the onnx package, and weights are
    skipped by length (a 13 MiB model takes milliseconds). ValueError for bytes that are not a model.
    """
    buf = memoryview(onnx_bytes)
    ops: set[str] = set()
    for field, (a, b) in _fields(buf, 0, len(buf)):
        if field == 7:
            _graph_ops(buf, a, b, ops)
        elif field == 25:
            for ffield, (c, d) in _fields(buf, a, b):
                if ffield == 7:
                    for nfield, (e, f) in _fields(buf, c, d):
                        if nfield == 4:
                            ops.add(bytes(buf[e:f]).decode("utf-8", "replace"))
    return ops


def onnx_has_qdq(onnx_bytes: bytes) -> bool:
    """True when the model is explicitly quantized (QuantizeLinear / DequantizeLinear nodes, e.g. an int8 export)."""
    return bool(onnx_op_types(onnx_bytes) & QDQ_OPS)


@dataclass(frozen=True)
class BuildMode:
    """How TensorRT builds one network: builder flags and whether a calibrator is attached."""

    fp16: bool
    int8: bool
    calibrate: bool
    note: str


def build_mode(requested: str, *, qdq: bool, have_calibration_data: bool) -> BuildMode:
    """The builder settings for a requested precision (fp32 | fp16 | int8) on a graph with or without Q/DQ.

    A Q/DQ graph carries its own scales: TensorRT only builds it with the INT8 flag set (or as a
    strongly typed network), and a calibrator must not be attached (its ranges would be ignored at
    best). So every request on such a graph builds explicit INT8, with FP16 enabled for the layers
    between Q/DQ pairs unless plain fp32 was asked for. A float graph needs calibration data for int8.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if qdq:
        return BuildMode(fp16=requested != "fp32", int8=True, calibrate=False,
                         note="explicit int8 (Q/DQ graph, scales from the export; no calibrator)"
                              + ("; fp16 between Q/DQ layers" if requested != "fp32" else ""))
    if requested == "int8":
        if not have_calibration_data:
            raise ConfigError("--int8 needs --calib DATA (real videos to calibrate on): the ONNX graph has no "
                              "Q/DQ nodes")
        return BuildMode(fp16=True, int8=True, calibrate=True, note="implicit int8, entropy calibration")
    return BuildMode(fp16=requested == "fp16", int8=False, calibrate=False, note=requested)


def plans_dir(bundle_dir: str | Path) -> Path:
    return Path(bundle_dir) / PLANS_DIR


def plan_path(bundle_dir: str | Path, key: PlanKey) -> Path:
    return plans_dir(bundle_dir) / f"{key.slug()}.plan"


def sidecar_path(plan: Path) -> Path:
    return plan.with_suffix(".json")


def write_plan(bundle_dir: str | Path, key: PlanKey, plan_bytes: bytes, extra: dict | None = None) -> Path:
    """Write plan + sidecar atomically (a crash never leaves a plan without its sidecar)."""
    path = plan_path(bundle_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".plan.tmp")
    tmp.write_bytes(plan_bytes)
    doc = {"key": asdict(key), "plan_sha256": hashlib.sha256(plan_bytes).hexdigest(), "extra": extra or {}}
    side_tmp = path.with_suffix(".json.tmp")
    side_tmp.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
    os.replace(side_tmp, sidecar_path(path))
    return path


def read_sidecar(plan: Path) -> tuple[PlanKey, str]:
    """(key, plan sha256) from a plan's sidecar; ValueError with the reason when it is unusable."""
    side = sidecar_path(plan)
    if not side.is_file():
        raise ValueError(f"{side.name} is missing")
    if side.stat().st_size > MAX_SIDECAR_BYTES:
        raise ValueError(f"{side.name} is too large")
    try:
        doc = json.loads(side.read_text(encoding="utf-8"))
        raw = doc["key"]
        key = PlanKey(**{k: raw[k] for k in PlanKey.__dataclass_fields__})
        digest = doc["plan_sha256"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{side.name} is not a valid plan sidecar ({type(exc).__name__})") from None
    types_ok = all(isinstance(getattr(key, k), str) for k in PlanKey.__dataclass_fields__ if k != "max_batch")
    if not (types_ok and isinstance(key.max_batch, int) and isinstance(digest, str)):
        raise ValueError(f"{side.name} has fields of the wrong type")
    return key, digest


def _check_bytes(path: Path, digest: str) -> str:
    if path.stat().st_size > MAX_PLAN_BYTES:
        return f"{path.name} is larger than {MAX_PLAN_BYTES >> 30} GiB"
    if sha256_file(path) != digest:
        return f"{path.name} does not match the SHA-256 in its sidecar (truncated or modified)"
    return ""


def find_plan(bundle_dir: str | Path, want: PlanKey, *, any_precision: bool = False) -> PlanStatus:
    """Find the plan for `want` (same machine, same ONNX hash); explain why others do not qualify.

    any_precision: accept a plan of any precision and batch size for this machine and ONNX
    file (runtime use: the engine splits large batches), preferring the most recently built.
    """
    directory = plans_dir(bundle_dir)
    rel = f"{Path(bundle_dir).name}/{PLANS_DIR}"
    candidates = sorted(directory.glob(f"{want.network}-*.plan"), key=lambda p: p.stat().st_mtime, reverse=True) \
        if directory.is_dir() else []
    reasons = []
    for path in candidates:
        try:
            key, digest = read_sidecar(path)
        except ValueError as exc:
            reasons.append(("corrupt", path, f"{path.name}: {exc}"))
            continue
        if key.network != want.network:
            reasons.append(("corrupt", path, f"{path.name}: sidecar says network {key.network!r}"))
            continue
        if key.machine() != want.machine():
            reasons.append(("foreign", path, (
                f"{path.name} was built for {key.gpu_name} (sm {key.compute_capability}) with TensorRT "
                f"{key.tensorrt_version}; this machine has {want.gpu_name} (sm {want.compute_capability}) with "
                f"TensorRT {want.tensorrt_version}")))
            continue
        if key.onnx_sha256 != want.onnx_sha256:
            reasons.append(("stale", path, f"{path.name} was built from a different {want.network}.onnx "
                                           f"(the ONNX file changed since)"))
            continue
        if not any_precision and (key.precision, key.max_batch) != (want.precision, want.max_batch):
            continue  # a valid plan, just another configuration
        problem = _check_bytes(path, digest)
        if problem:
            reasons.append(("corrupt", path, problem))
            continue
        return PlanStatus("ok", path, f"{path.name}: {key.precision}, batch 1..{key.max_batch}")
    if not reasons:
        return PlanStatus("missing", None, f"no {want.network} plan in {rel} for {want.gpu_name} / TensorRT "
                                           f"{want.tensorrt_version}; run `twostream build-engines`")
    state, path, message = reasons[0]
    return PlanStatus(state, path, f"{message}; run `twostream build-engines` to rebuild")


def plan_key(bundle: Bundle, network: str, *, gpu_name: str, compute_capability: str, tensorrt_version: str,
             precision: str = "fp32", max_batch: int = 1, onnx_sha256: str | None = None) -> PlanKey:
    """The key of the plan for one of a bundle's networks on a given GPU / TensorRT version."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return PlanKey(
        network=network,
        gpu_name=gpu_name,
        compute_capability=compute_capability,
        tensorrt_version=tensorrt_version,
        onnx_sha256=onnx_sha256 or sha256_file(onnx_file(bundle, network)),
        precision=precision,
        max_batch=int(max_batch),
    )
