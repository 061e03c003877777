"""Model bundles: a directory with bundle.toml, labels.txt and one ONNX file per network.

Two layouts of bundle.toml are read (the full format is in docs and /tmp/work/bundle_v2.md):
- format 1 (no `format` key, today's models/default): [model] spatial/temporal files, [flow] with
  length L, [fusion] spatial/temporal weights. Read as family "late" with the networks
  spatial [frame] and temporal [flow_stack] and late fusion, unchanged.
- format 2 (`[model] format = 2`): a `family`, one [[networks]] table per ONNX graph, each with
  the window inputs it takes in order (frame, flow_stack, clip, frame_stack; see
  stream.core.inputs), and [fusion] method "late" (weighted mean of softmaxes) or "single".

A bundle is untrusted input: every path must stay inside the directory, files must have sane
sizes, unknown keys are refused, and the networks must agree with the declared labels, input
kinds and sizes (check_networks) before anything runs. Every problem is one BundleError line.
write_bundle_toml is the one writer of both layouts (train/export, the families, `fit`).
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from stream.core.errors import BundleError
from stream.core.flow import FlowSettings
from stream.core.inputs import INPUT_KINDS, InputSpec, WindowNeeds, window_needs
from stream.core.toml_writer import toml_value

BUNDLE_FILE = "bundle.toml"
MAX_MODEL_BYTES = 512 * 1024 * 1024
MAX_TEXT_BYTES = 1024 * 1024
MAX_LABELS = 100_000
MAX_NETWORKS = 8
MAX_INPUTS = 4
FORMATS = (1, 2)
FUSION_METHODS = ("late", "single")
# Per-kind limits: the rings ([pipeline] flow_ring <= 4096 slots) must hold 2 windows plus a stride.
LIMITS = {"flow_length": (1, 64), "clip_length": (1, 512), "clip_stride": (1, 64), "stack_length": (1, 256)}
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")


@dataclass(frozen=True)
class Network:
    """One ONNX graph of a bundle and the window inputs it takes, in the graph's input order."""

    name: str
    file: Path
    inputs: tuple[InputSpec, ...]

    def shapes(self, size: int) -> tuple[tuple[int, ...], ...]:
        return tuple(spec.shape(size) for spec in self.inputs)


@dataclass(frozen=True)
class Fusion:
    """How network outputs become the fused score: "late" (weights per network name) or "single" (one network)."""

    method: str
    weights: dict[str, float] = field(default_factory=dict)
    network: str = ""


@dataclass(frozen=True)
class Bundle:
    """Everything the runtime needs to know about a trained model of any family."""

    path: Path
    labels: tuple[str, ...]
    input_size: int  # frames and flow are resized to input_size x input_size
    mean: tuple[float, float, float]  # per RGB channel, pixel units (0..255)
    std: tuple[float, float, float]
    flow: FlowSettings  # [flow] (defaults when no network takes a flow_stack)
    flow_length: int  # L of the flow_stack inputs; 0 when no network takes one
    fusion_weights: dict[str, float]  # late: {network: w}; single: {network: 1.0}
    networks: tuple[Network, ...] = ()
    fusion: Fusion = field(default_factory=lambda: Fusion("late"))
    family: str = "late"
    format: int = 1
    arch: str = ""
    provenance: dict = field(default_factory=dict)
    policy: dict = field(default_factory=dict)  # [policy]: the bundle's default decision keys (read_policy)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def needs(self) -> WindowNeeds:
        """Frames and flows one window reads, and the frames before the newest that must exist."""
        return window_needs(spec for net in self.networks for spec in net.inputs)

    @property
    def needs_flow(self) -> bool:
        return self.needs.flows > 0

    @property
    def span(self) -> int:
        """Frames a window covers before its newest one (format 1: L)."""
        return self.needs.span

    def network(self, name: str) -> Network:
        for net in self.networks:
            if net.name == name:
                return net
        raise BundleError(f"{self.path}: has no network named {name!r} (family {self.family!r}, networks: "
                          f"{', '.join(n.name for n in self.networks)})")

    # Two-stream views kept for the tools that only know spatial/temporal (plans, doctor, bench).
    @property
    def spatial_file(self) -> Path:
        return self.network("spatial").file

    @property
    def temporal_file(self) -> Path:
        return self.network("temporal").file


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


def _model_file(root: Path, name: object, key: str) -> Path:
    file = _inside(root, name, key)
    if file.stat().st_size > MAX_MODEL_BYTES:
        raise BundleError(f"{file}: larger than {MAX_MODEL_BYTES >> 20} MiB, refusing to load")
    if (file.parent / (file.name + ".data")).exists():
        raise BundleError(f"{file}: has external weights ({file.name}.data); export with weights embedded")
    return file


def _number_list(value: object, key: str, where: Path) -> tuple[float, float, float]:
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value)):
        raise BundleError(f"{where}: {key} must be a list of 3 numbers, got {value!r}")
    return tuple(float(v) for v in value)  # type: ignore[return-value]


def _int(table: dict, key: str, where: str, limit: str, default: int | None = None) -> int:
    lo, hi = LIMITS[limit]
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not (lo <= value <= hi):
        raise BundleError(f"{where}.{key} must be an integer in {lo}..{hi}, got {value!r}")
    return value


def _unknown(table: dict, known: tuple[str, ...], where: str) -> None:
    extra = [k for k in table if k not in known]
    if extra:
        raise BundleError(f"{where}: unknown key {extra[0]!r} (known: {', '.join(known)})")


def _flow_settings(flow: dict, toml_path: Path) -> FlowSettings:
    try:
        return FlowSettings(
            backend=flow.get("backend", "dis"),
            preset=flow.get("preset", "fast"),
            bound=float(flow.get("bound", 20.0)),
            stacking=flow.get("stacking", "interleaved"),
            subtract=flow.get("subtract", "none"),  # bundles from before camera-motion subtraction: raw flow
        ).validate(where=f"{toml_path}: flow")
    except (TypeError, ValueError):
        raise BundleError(f"{toml_path}: [flow] has a value of the wrong type") from None


def _labels(root: Path, model: dict) -> tuple[str, ...]:
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
    return labels


def read_bundle(path: str | Path) -> Bundle:
    """Parse and validate bundle.toml and labels.txt (does not load the networks; see check_networks)."""
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
    if not isinstance(model, dict):
        raise BundleError(f"{toml_path}: needs a [model] table")
    fmt = model.get("format", 1)
    if fmt not in FORMATS or isinstance(fmt, bool):
        raise BundleError(f"{toml_path}: model.format = {fmt!r}: this version reads formats "
                          f"{', '.join(map(str, FORMATS))}")
    size = model.get("input_size")
    if not isinstance(size, int) or isinstance(size, bool) or not (16 <= size <= 1024):
        raise BundleError(f"{toml_path}: model.input_size must be an integer in 16..1024, got {size!r}")
    common = dict(
        path=root, input_size=size,
        mean=_number_list(model.get("mean", [127.0, 127.0, 127.0]), "model.mean", toml_path),
        std=_number_list(model.get("std", [128.0, 128.0, 128.0]), "model.std", toml_path),
        arch=str(model.get("arch", "")),
    )
    if any(v == 0 for v in common["std"]):
        raise BundleError(f"{toml_path}: model.std must not contain 0")
    parsed = _read_format1(root, toml_path, doc, model) if fmt == 1 else _read_format2(root, toml_path, doc, model)
    labels = _labels(root, model)
    provenance = doc.get("provenance", {})
    policy = read_policy(doc.get("policy", {}), toml_path)
    return Bundle(labels=labels, format=fmt, provenance=provenance if isinstance(provenance, dict) else {},
                  policy=policy, **common, **parsed)


def _read_format1(root: Path, toml_path: Path, doc: dict, model: dict) -> dict:
    """Today's two-stream layout: family "late", spatial [frame] + temporal [flow_stack], late fusion."""
    flow = doc.get("flow")
    if not isinstance(flow, dict):
        raise BundleError(f"{toml_path}: needs [model] and [flow] tables")
    fusion = doc.get("fusion", {"spatial": 1.0, "temporal": 1.5})
    if not isinstance(fusion, dict):
        raise BundleError(f"{toml_path}: [fusion] must be a table")
    length = flow.get("length")
    if not isinstance(length, int) or not (1 <= length <= 64):
        raise BundleError(f"{toml_path}: flow.length must be an integer in 1..64, got {length!r}")
    flow_settings = _flow_settings(flow, toml_path)
    weights = {}
    for key in ("spatial", "temporal"):
        w = fusion.get(key, 1.0)
        if not isinstance(w, (int, float)) or w < 0:
            raise BundleError(f"{toml_path}: fusion.{key} must be a number >= 0, got {w!r}")
        weights[key] = float(w)
    if weights["spatial"] + weights["temporal"] <= 0:
        raise BundleError(f"{toml_path}: fusion weights must not both be 0")
    files = {key: _model_file(root, model.get(key, f"{key}.onnx"), f"model.{key}") for key in ("spatial", "temporal")}
    networks = (Network("spatial", files["spatial"], (InputSpec("frame"),)),
                Network("temporal", files["temporal"], (InputSpec("flow_stack", length),)))
    return dict(flow=flow_settings, flow_length=length, fusion_weights=weights, networks=networks,
                fusion=Fusion("late", dict(weights)), family="late")


MODEL_KEYS = ("format", "family", "arch", "input_size", "mean", "std", "labels")
FLOW_KEYS = ("backend", "preset", "bound", "stacking", "subtract", "length")
NETWORK_KEYS = ("name", "file", "inputs", "clip_length", "clip_stride", "stack_length")
KIND_KEYS = {"clip": ("clip_length", "clip_stride"), "frame_stack": ("stack_length",)}


def _read_format2(root: Path, toml_path: Path, doc: dict, model: dict) -> dict:
    _unknown(doc, ("model", "flow", "networks", "fusion", "policy", "provenance"), str(toml_path))
    _unknown(model, MODEL_KEYS, f"{toml_path}: [model]")
    family = model.get("family", "")
    if not isinstance(family, str) or not family or len(family) > 64:
        raise BundleError(f"{toml_path}: model.family must be a non-empty name (late, convfusion, hidden, i3d, ...), "
                          f"got {family!r}")
    tables = doc.get("networks")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise BundleError(f"{toml_path}: needs at least one [[networks]] table")
    if len(tables) > MAX_NETWORKS:
        raise BundleError(f"{toml_path}: {len(tables)} [[networks]] tables; at most {MAX_NETWORKS}")

    flow = doc.get("flow")
    if flow is not None and not isinstance(flow, dict):
        raise BundleError(f"{toml_path}: [flow] must be a table")
    flow_length = 0
    networks = []
    for i, table in enumerate(tables):
        where = f"{toml_path}: networks[{i}]"
        _unknown(table, NETWORK_KEYS, where)
        name = table.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise BundleError(f"{where}.name must be 1-32 letters, digits, '_', '-' or '.', got {name!r}")
        where = f"{toml_path}: network {name!r}"
        if any(n.name == name for n in networks):
            raise BundleError(f"{where}: the name is used twice")
        kinds = table.get("inputs")
        if not isinstance(kinds, list) or not kinds or not all(isinstance(k, str) for k in kinds):
            raise BundleError(f"{where}: inputs must be a non-empty list of input kinds ({', '.join(INPUT_KINDS)})")
        if len(kinds) > MAX_INPUTS or len(set(kinds)) != len(kinds):
            raise BundleError(f"{where}: inputs {kinds!r}: at most {MAX_INPUTS}, each kind once")
        for key, owners in (("clip_length", "clip"), ("clip_stride", "clip"), ("stack_length", "frame_stack")):
            if key in table and owners not in kinds:
                raise BundleError(f"{where}: {key} is set but inputs {kinds!r} has no {owners!r}")
        specs = []
        for kind in kinds:
            if kind not in INPUT_KINDS:
                raise BundleError(f"{where}: unknown input kind {kind!r} (known: {', '.join(INPUT_KINDS)})")
            if kind == "frame":
                specs.append(InputSpec("frame"))
            elif kind == "flow_stack":
                if flow is None:
                    raise BundleError(f"{where}: takes a flow_stack but the bundle has no [flow] table")
                flow_length = _int(flow, "length", f"{toml_path}: flow", "flow_length")
                specs.append(InputSpec("flow_stack", flow_length))
            elif kind == "clip":
                specs.append(InputSpec("clip", _int(table, "clip_length", where, "clip_length"),
                                       _int(table, "clip_stride", where, "clip_stride", default=1)))
            else:
                specs.append(InputSpec("frame_stack", _int(table, "stack_length", where, "stack_length")))
        file = _model_file(root, table.get("file"), f"network {name!r} file")
        networks.append(Network(name, file, tuple(specs)))

    if flow is not None:
        _unknown(flow, FLOW_KEYS, f"{toml_path}: [flow]")
    flow_settings = _flow_settings(flow, toml_path) if flow is not None else FlowSettings()
    fusion = _read_fusion(doc.get("fusion"), toml_path, [n.name for n in networks])
    weights = dict(fusion.weights) if fusion.method == "late" else {fusion.network: 1.0}
    return dict(flow=flow_settings, flow_length=flow_length, fusion_weights=weights, networks=tuple(networks),
                fusion=fusion, family=family)


def _read_fusion(table: object, toml_path: Path, names: list[str]) -> Fusion:
    where = f"{toml_path}: [fusion]"
    if table is None and len(names) == 1:
        return Fusion("single", network=names[0])
    if not isinstance(table, dict):
        raise BundleError(f"{where} is missing or not a table (method = \"late\" with weights, or \"single\")")
    method = table.get("method")
    if method not in FUSION_METHODS:
        raise BundleError(f"{where}.method = {method!r}: expected one of {', '.join(FUSION_METHODS)}")
    if method == "single":
        _unknown(table, ("method", "network"), where)
        net = table.get("network")
        if net not in names:
            raise BundleError(f"{where}.network = {net!r} is not a network of this bundle ({', '.join(names)})")
        return Fusion("single", network=net)
    _unknown(table, ("method", "weights"), where)
    weights = table.get("weights")
    if not isinstance(weights, dict):
        raise BundleError(f"{where}.weights must be a table of network name = weight")
    unknown = [k for k in weights if k not in names]
    if unknown:
        raise BundleError(f"{where}.weights names unknown network {unknown[0]!r} (networks: {', '.join(names)})")
    missing = [n for n in names if n not in weights]
    if missing:
        raise BundleError(f"{where}.weights has no weight for network {missing[0]!r}")
    out = {}
    for name in names:
        w = weights[name]
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not (0 <= w <= 1000):
            raise BundleError(f"{where}.weights.{name} must be a number in 0..1000, got {w!r}")
        out[name] = float(w)
    if sum(out.values()) <= 0:
        raise BundleError(f"{where}.weights must not all be 0")
    return Fusion("late", out)


def read_policy(table: object, where: Path) -> dict:
    """A bundle's optional [policy]: its default "none" decision (min_score, min_margin, background; see
    stream.core.policy.resolve), checked like the config's keys; the config overrides each key it sets."""
    from dataclasses import fields

    from stream.core.errors import ConfigError
    from stream.core.policy import BUNDLE_KEYS, PolicySettings
    from stream.core.setting import check_setting

    if not isinstance(table, dict):
        raise BundleError(f"{where}: [policy] must be a table")
    specs = {f.name: f for f in fields(PolicySettings)}
    out = {}
    for key, value in table.items():
        if key not in BUNDLE_KEYS:
            raise BundleError(f"{where}: unknown key [policy] {key} (a bundle may set {', '.join(BUNDLE_KEYS)})")
        try:
            out[key] = check_setting("policy", key, specs[key], value, str(where))
        except ConfigError as exc:
            raise BundleError(str(exc)) from None
        if key != "background" and out[key] < 0:
            raise BundleError(f"{where}: [policy] {key} = {value!r}: must be >= 0")
    return out


def ring_slots_needed(bundle: Bundle, stride: int) -> int:
    """Slots the flow ring (past frames and flow) needs: two windows' reads plus a stride (format 1: 2L + stride)."""
    return 2 * bundle.needs.slots + stride


def check_rings(bundle: Bundle, *, flow_ring: int, stride: int) -> None:
    """The rings must hold what the largest window needs ([pipeline] flow_ring holds the past frames and flows)."""
    need = ring_slots_needed(bundle, stride)
    if flow_ring < need:
        widest = max(bundle.networks, key=lambda n: window_needs(n.inputs).slots)
        what = ", ".join(s.describe() for s in widest.inputs)
        raise BundleError(
            f"{bundle.path / BUNDLE_FILE}: network {widest.name!r} ({what}) reads {bundle.needs.slots} frames per "
            f"window; [pipeline] flow_ring = {flow_ring} must be >= 2 x {bundle.needs.slots} + stride = {need} "
            f"for this model")


def check_networks(bundle: Bundle, engines: dict) -> None:
    """Fail clearly when a loaded network disagrees with the bundle description (inputs, shapes, classes)."""
    s = bundle.input_size
    for net in bundle.networks:
        engine = engines[net.name]
        got = tuple(tuple(shape) for shape in getattr(engine, "input_shapes", (engine.input_shape,)))
        want = net.shapes(s)
        kinds = ", ".join(spec.describe() for spec in net.inputs)
        if len(got) != len(want):
            raise BundleError(f"{net.file}: has {len(got)} input(s) but bundle.toml declares {len(want)} ({kinds})")
        for k, (g, w, spec) in enumerate(zip(got, want, net.inputs, strict=True)):
            if g != w:
                hint = (f"flow.length = {spec.length} and input_size = {s}" if spec.kind == "flow_stack"
                        else f"input_size = {s}")
                raise BundleError(f"{net.file}: input {k} is {g}, but {spec.describe()} with {hint} needs {w}")
        if engine.num_outputs != bundle.num_classes:
            raise BundleError(f"{bundle.path}: {net.name} network has {engine.num_outputs} outputs but labels.txt "
                              f"has {bundle.num_classes} labels")


def check_engines(bundle: Bundle, spatial, temporal) -> None:
    """Two-stream form of check_networks (format 1 callers)."""
    check_networks(bundle, {"spatial": spatial, "temporal": temporal})


def write_bundle_toml(path: str | Path, *, input_size: int, mean, std, flow: FlowSettings | None = None,
                      flow_length: int = 0, fusion_weights: dict[str, float] | None = None, arch: str = "",
                      provenance: dict | None = None, policy: dict | None = None, networks: list[dict] | None = None,
                      family: str = "late", fusion: dict | None = None, labels_file: str = "labels.txt") -> Path:
    """Write bundle.toml; plain TOML without a third-party writer. The one bundle writer of the project.

    Without `networks`: format 1, today's two-stream layout (spatial.onnx + temporal.onnx, flow_length,
    fusion_weights {"spatial", "temporal"}), byte-for-byte what train/export always wrote.

    With `networks`: format 2. Each entry is a dict {"name", "file", "inputs": [kinds...]} plus the kind
    parameters it needs ("clip_length", "clip_stride", "stack_length"); `flow` and `flow_length` are
    written as [flow] (required when a network takes a flow_stack); `fusion` is {"method": "late",
    "weights": {name: w}} or {"method": "single", "network": name} (default: late with fusion_weights,
    or single when there is one network). Callers check the result with engines.loader.open_bundle.
    """
    v = toml_value
    provenance = provenance or {}
    if networks is None:
        fusion_weights = fusion_weights or {"spatial": 1.0, "temporal": 1.5}
        lines = [
            "# twostream model bundle: read by engines.bundle.read_bundle",
            "[model]",
            f"arch = {v(arch)}",
            f"input_size = {int(input_size)}",
            f"mean = {v([float(m) for m in mean])}",
            f"std = {v([float(s) for s in std])}",
            f"labels = {v(labels_file)}",
            'spatial = "spatial.onnx"',
            'temporal = "temporal.onnx"',
            "",
            "[flow]",
            f"backend = {v(flow.backend)}",
            f"preset = {v(flow.preset)}",
            f"bound = {v(float(flow.bound))}",
            f"stacking = {v(flow.stacking)}",
            f"subtract = {v(flow.subtract)}",
            f"length = {int(flow_length)}",
            "",
            "[fusion]",
            f"spatial = {v(float(fusion_weights['spatial']))}",
            f"temporal = {v(float(fusion_weights['temporal']))}",
            "",
        ]
    else:
        lines = [
            "# twostream model bundle, format 2: read by engines.bundle.read_bundle",
            "[model]",
            "format = 2",
            f"family = {v(family)}",
            f"arch = {v(arch)}",
            f"input_size = {int(input_size)}",
            f"mean = {v([float(m) for m in mean])}",
            f"std = {v([float(s) for s in std])}",
            f"labels = {v(labels_file)}",
            "",
        ]
        if any("flow_stack" in n.get("inputs", ()) for n in networks) or flow is not None:
            flow = flow or FlowSettings()
            lines += ["[flow]", f"backend = {v(flow.backend)}", f"preset = {v(flow.preset)}",
                      f"bound = {v(float(flow.bound))}", f"stacking = {v(flow.stacking)}",
                      f"subtract = {v(flow.subtract)}", f"length = {int(flow_length)}", ""]
        for net in networks:
            extra = [k for k in net if k not in NETWORK_KEYS]
            if extra:
                raise ValueError(f"network {net.get('name')!r}: unknown key {extra[0]!r} (known: {NETWORK_KEYS})")
            lines.append("[[networks]]")
            lines += [f"{k} = {v(net[k])}" for k in NETWORK_KEYS if k in net]
            lines.append("")
        if fusion is None:
            fusion = ({"method": "single", "network": networks[0]["name"]} if len(networks) == 1 and not fusion_weights
                      else {"method": "late", "weights": fusion_weights or {n["name"]: 1.0 for n in networks}})
        lines += ["[fusion]"] + [f"{k} = {v(x)}" for k, x in fusion.items()] + [""]
    if policy:  # the bundle's default decision (twostream fit): [policy] min_score, background, ...
        lines += ["[policy]"] + [f"{k} = {v(x)}" for k, x in policy.items()] + [""]
    lines += ["[provenance]"]
    lines += [f"{k} = {v(x)}" for k, x in provenance.items()]
    out = Path(path) / BUNDLE_FILE
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
