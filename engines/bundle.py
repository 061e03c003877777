"""Model bundles: a directory with spatial.onnx, temporal.onnx, labels.txt and bundle.toml.

A bundle is untrusted input: every path must stay inside the directory, files must
have sane sizes, and the networks must agree with the declared labels, input size
and flow length before anything runs.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from stream.core.errors import BundleError
from stream.core.flow import FlowSettings

BUNDLE_FILE = "bundle.toml"
MAX_MODEL_BYTES = 512 * 1024 * 1024
MAX_TEXT_BYTES = 1024 * 1024
MAX_LABELS = 100_000


@dataclass(frozen=True)
class Bundle:
    """Everything the runtime needs to know about a trained two-stream model."""

    path: Path
    labels: tuple[str, ...]
    input_size: int  # frames and flow are resized to input_size x input_size
    mean: tuple[float, float, float]  # per RGB channel, pixel units (0..255)
    std: tuple[float, float, float]
    flow: FlowSettings
    flow_length: int  # L: the temporal stream sees 2L channels
    fusion_weights: dict[str, float]  # {"spatial": w, "temporal": w}
    spatial_file: Path
    temporal_file: Path
    arch: str = ""
    provenance: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def _inside(root: Path, name: object, key: str) -> Path:
    if not isinstance(name, str) or not name:
        raise BundleError(f"{root / BUNDLE_FILE}: {key} must be a file name, got {name!r}")
    try:  # a NUL byte or an over-long name makes the OS calls raise instead of answering
        path = (root / name).resolve()
        if root.resolve() not in path.parents:
            raise BundleError(f"{root / BUNDLE_FILE}: {key} = {name!r} points outside the bundle directory")
        if not path.is_file():
            raise BundleError(f"{root}: {key} file {name!r} is missing")
    except (OSError, ValueError) as exc:
        raise BundleError(f"{root / BUNDLE_FILE}: {key} = {name!r} is not a usable file name ({exc})") from None
    return path


def _number_list(value: object, key: str, where: Path) -> tuple[float, float, float]:
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value)):
        raise BundleError(f"{where}: {key} must be a list of 3 numbers, got {value!r}")
    return tuple(float(v) for v in value)  # type: ignore[return-value]


def read_bundle(path: str | Path) -> Bundle:
    """Parse and validate bundle.toml and labels.txt (does not load the networks)."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"model bundle {str(root)!r} is not a directory")
    toml_path = root / BUNDLE_FILE
    if not toml_path.is_file():
        raise BundleError(f"{root}: {BUNDLE_FILE} is missing (not a model bundle)")
    if toml_path.stat().st_size > MAX_TEXT_BYTES:
        raise BundleError(f"{toml_path}: too large for a bundle description")
    try:
        doc = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{toml_path}: not valid TOML ({exc})") from None

    model = doc.get("model")
    flow = doc.get("flow")
    if not isinstance(model, dict) or not isinstance(flow, dict):
        raise BundleError(f"{toml_path}: needs [model] and [flow] tables")
    fusion = doc.get("fusion", {"spatial": 1.0, "temporal": 1.5})
    if not isinstance(fusion, dict):
        raise BundleError(f"{toml_path}: [fusion] must be a table")

    size = model.get("input_size")
    if not isinstance(size, int) or not (16 <= size <= 1024):
        raise BundleError(f"{toml_path}: model.input_size must be an integer in 16..1024, got {size!r}")
    length = flow.get("length")
    if not isinstance(length, int) or not (1 <= length <= 64):
        raise BundleError(f"{toml_path}: flow.length must be an integer in 1..64, got {length!r}")
    try:
        flow_settings = FlowSettings(
            backend=flow.get("backend", "dis"),
            preset=flow.get("preset", "fast"),
            bound=float(flow.get("bound", 20.0)),
            stacking=flow.get("stacking", "interleaved"),
            subtract=flow.get("subtract", "none"),  # bundles from before camera-motion subtraction: raw flow
        ).validate(where=f"{toml_path}: flow")
    except (TypeError, ValueError):
        raise BundleError(f"{toml_path}: [flow] has a value of the wrong type") from None

    weights = {}
    for key in ("spatial", "temporal"):
        w = fusion.get(key, 1.0)
        if not isinstance(w, (int, float)) or w < 0:
            raise BundleError(f"{toml_path}: fusion.{key} must be a number >= 0, got {w!r}")
        weights[key] = float(w)
    if weights["spatial"] + weights["temporal"] <= 0:
        raise BundleError(f"{toml_path}: fusion weights must not both be 0")

    labels_path = _inside(root, model.get("labels", "labels.txt"), "model.labels")
    if labels_path.stat().st_size > MAX_TEXT_BYTES:
        raise BundleError(f"{labels_path}: too large for a label list")
    try:
        labels = tuple(line.strip() for line in labels_path.read_text(encoding="utf-8").splitlines() if line.strip())
    except UnicodeDecodeError:
        raise BundleError(f"{labels_path}: not UTF-8 text") from None
    if not labels or len(labels) > MAX_LABELS:
        raise BundleError(f"{labels_path}: expected 1..{MAX_LABELS} labels, found {len(labels)}")
    if len(set(labels)) != len(labels):
        raise BundleError(f"{labels_path}: labels must be unique")

    files = {}
    for key in ("spatial", "temporal"):
        file = _inside(root, model.get(key, f"{key}.onnx"), f"model.{key}")
        if file.stat().st_size > MAX_MODEL_BYTES:
            raise BundleError(f"{file}: larger than {MAX_MODEL_BYTES >> 20} MiB, refusing to load")
        if (file.parent / (file.name + ".data")).exists():
            raise BundleError(f"{file}: has external weights ({file.name}.data); export with weights embedded")
        files[key] = file

    provenance = doc.get("provenance", {})
    return Bundle(
        path=root,
        labels=labels,
        input_size=size,
        mean=_number_list(model.get("mean", [127.0, 127.0, 127.0]), "model.mean", toml_path),
        std=_number_list(model.get("std", [128.0, 128.0, 128.0]), "model.std", toml_path),
        flow=flow_settings,
        flow_length=length,
        fusion_weights=weights,
        spatial_file=files["spatial"],
        temporal_file=files["temporal"],
        arch=str(model.get("arch", "")),
        provenance=provenance if isinstance(provenance, dict) else {},
    )


def check_engines(bundle: Bundle, spatial, temporal) -> None:
    """Fail clearly when the networks disagree with the bundle description."""
    s = bundle.input_size
    if spatial.input_shape != (3, s, s):
        raise BundleError(
            f"{bundle.spatial_file}: input is {spatial.input_shape}, bundle.toml says (3, {s}, {s})"
        )
    want = (2 * bundle.flow_length, s, s)
    if temporal.input_shape != want:
        raise BundleError(
            f"{bundle.temporal_file}: input is {temporal.input_shape}, but flow.length = {bundle.flow_length} "
            f"and input_size = {s} need {want}"
        )
    for key, engine in (("spatial", spatial), ("temporal", temporal)):
        if engine.num_outputs != bundle.num_classes:
            raise BundleError(
                f"{bundle.path}: {key} network has {engine.num_outputs} outputs but labels.txt has "
                f"{bundle.num_classes} labels"
            )


def write_bundle_toml(path: str | Path, *, input_size: int, mean, std, flow: FlowSettings, flow_length: int,
                      fusion_weights: dict[str, float], arch: str, provenance: dict) -> Path:
    """Write bundle.toml (used by train/export); plain TOML without a third-party writer."""

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    lines = [
        "# twostream model bundle: read by engines.bundle.read_bundle",
        "[model]",
        f"arch = {value(arch)}",
        f"input_size = {int(input_size)}",
        f"mean = {value([float(m) for m in mean])}",
        f"std = {value([float(s) for s in std])}",
        'labels = "labels.txt"',
        'spatial = "spatial.onnx"',
        'temporal = "temporal.onnx"',
        "",
        "[flow]",
        f"backend = {value(flow.backend)}",
        f"preset = {value(flow.preset)}",
        f"bound = {value(float(flow.bound))}",
        f"stacking = {value(flow.stacking)}",
        f"subtract = {value(flow.subtract)}",
        f"length = {int(flow_length)}",
        "",
        "[fusion]",
        f"spatial = {value(float(fusion_weights['spatial']))}",
        f"temporal = {value(float(fusion_weights['temporal']))}",
        "",
        "[provenance]",
    ]
    lines += [f"{k} = {value(v)}" for k, v in provenance.items()]
    out = Path(path) / BUNDLE_FILE
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
