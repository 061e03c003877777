"""The bundle's two networks as torch eager modules (for engine-vs-eager and the baselines).

Where they come from, best first:
  1. the training checkpoints named in the bundle's provenance (export_command), loaded with
     weights_only=True: the exact modules the ONNX files were exported from;
  2. onnx2torch (if installed): the ONNX graphs converted back to torch, same weights;
  3. the same architecture built with train.models.build_model (or train.testing.tiny_net for test
     bundles) with random weights: same speed, not the same outputs.
Every path checks torch outputs against ONNX Runtime on real inputs and reports the difference,
so the JSON says whether the eager numbers come from the same weights.
Bundles of the other families (train.families): family_eager_networks rebuilds each network the way
`twostream family bench` / `family export` do (the family checkpoint named in the export command, else the
registry's builder with the config the bundle records, random weights).
torch is imported inside functions only.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream.bench.common import BenchContext, torch_available

REPO = Path(__file__).resolve().parents[2]


@dataclass
class EagerNets:
    spatial: object
    temporal: object
    source: str  # "checkpoints", "onnx2torch", "random weights (same architecture)"
    detail: str
    quantization: str = ""  # the bundle's ([provenance] quantization); eager modules are always fp32


def _checkpoints_from_provenance(bundle) -> list[Path]:
    cmd = str(bundle.provenance.get("export_command", ""))
    found = []
    try:
        words = shlex.split(cmd)
    except ValueError:
        return []
    for w in words[2:]:  # after "twostream export"; run folders resolve as `twostream export` does
        if w.startswith("-"):
            continue
        for base in (Path.cwd(), REPO, bundle.path):
            p = (base / w) if not Path(w).is_absolute() else Path(w)
            if p.is_dir():
                p = next((p / n for n in ("last.pt", "best.pt") if (p / n).is_file()), p)
            if p.is_file() and p.suffix == ".pt":
                found.append(p)
                break
    return found


def _from_checkpoints(bundle, paths: list[Path]):
    from train.engine import load_checkpoint
    from train.models import build_model

    nets = {}
    for p in paths:
        c = load_checkpoint(p)
        m = c["meta"]
        net = build_model(m["arch"], len(bundle.labels), in_channels=m["in_channels"], weights=None,
                          dropout=m.get("dropout", 0.0))
        net.load_state_dict(c["model"])
        nets[m.get("stream")] = net.eval()
    if set(nets) != {"spatial", "temporal"}:
        raise ValueError(f"checkpoints {', '.join(map(str, paths))} are not one spatial and one temporal")
    return nets["spatial"], nets["temporal"]


def _from_onnx2torch(bundle):
    from onnx2torch import convert

    return convert(str(bundle.spatial_file)).eval(), convert(str(bundle.temporal_file)).eval()


def _random_same_arch(bundle):
    arch = bundle.arch or ""
    parts = arch.split("+") if "+" in arch else [arch, arch]
    n = len(bundle.labels)
    L = bundle.flow_length
    out = []
    for a, cin in zip(parts, (3, 2 * L), strict=False):  # 'a+b+c' (malformed): first two
        if a == "tiny_test_net":
            from train.testing import tiny_net

            out.append(tiny_net(cin, n).eval())
        else:
            from train.models import build_model

            out.append(build_model(a, n, in_channels=cin, weights=None).eval())
    return out[0], out[1]


def eager_networks(ctx: BenchContext) -> EagerNets | None:
    """The bundle's networks in torch eager, or None (with a note) when torch is missing."""
    if "eager" in ctx.cache:
        return ctx.cache["eager"]
    if not torch_available():
        ctx.report.note("torch is not installed: engine-vs-eager and the torch-eager baselines were skipped")
        ctx.cache["eager"] = None
        return None
    import torch

    torch.set_num_threads(max(1, ctx.threads))
    bundle = ctx.bundle
    attempts = []
    nets = None
    ckpts = _checkpoints_from_provenance(bundle)
    if ckpts:
        try:
            s, t = _from_checkpoints(bundle, ckpts)
            nets = EagerNets(s, t, "checkpoints", ", ".join(str(p) for p in ckpts))
        except Exception as exc:  # a stale or foreign checkpoint: fall through to the next way
            attempts.append(f"checkpoints: {type(exc).__name__}: {exc}")
    if nets is None:
        try:
            s, t = _from_onnx2torch(bundle)
            nets = EagerNets(s, t, "onnx2torch", "ONNX graphs converted back to torch (same weights)")
        except Exception as exc:
            attempts.append(f"onnx2torch: {type(exc).__name__}: {str(exc)[:200]}")
    if nets is None:
        s, t = _random_same_arch(bundle)
        nets = EagerNets(s, t, "random weights (same architecture)",
                         f"arch {bundle.arch or '?'} built with random weights: same speed, different outputs")
    if attempts:
        nets.detail += " (" + "; ".join(attempts) + ")"
    nets.quantization = str(bundle.provenance.get("quantization", "none"))
    ctx.cache["eager"] = nets
    return nets


def parity(ctx: BenchContext, nets: EagerNets, spatial_in: np.ndarray, temporal_in: np.ndarray) -> dict:
    """Max |logit difference| torch eager vs ONNX Runtime on the same real inputs."""
    import torch

    from stream.bench.stages import loaded_bundle

    loaded = loaded_bundle(ctx)
    with torch.inference_mode():
        es = nets.spatial(torch.from_numpy(spatial_in)).numpy()
        et = nets.temporal(torch.from_numpy(temporal_in)).numpy()
    return {"spatial_max_abs_diff": float(np.max(np.abs(es - loaded.spatial.run(spatial_in)))),
            "temporal_max_abs_diff": float(np.max(np.abs(et - loaded.temporal.run(temporal_in))))}


def fp32_onnx(ctx: BenchContext, nets: EagerNets) -> tuple[Path, Path] | None:
    """The eager modules exported to fp32 ONNX (train.onnx_export, the bundle's own exporter) when the bundle
    itself is quantised: separates what ONNX Runtime gains from what int8/fp16 gains. None otherwise."""
    if nets.quantization in ("", "none") or nets.source == "onnx2torch":
        return None
    if "fp32_onnx" in ctx.cache:
        return ctx.cache["fp32_onnx"]
    from train.onnx_export import export_onnx

    b = ctx.bundle
    out = ctx.tmp / "fp32"
    s = export_onnx(nets.spatial, out / "spatial.onnx", (3, b.input_size, b.input_size))
    t = export_onnx(nets.temporal, out / "temporal.onnx", (2 * b.flow_length, b.input_size, b.input_size))
    ctx.cache["fp32_onnx"] = (s, t)
    return s, t


def _family_checkpoint(bundle) -> Path | None:
    """The family run's last.pt named in [provenance] export_command (`twostream family export RUN OUT`), if here."""
    try:
        words = shlex.split(str(bundle.provenance.get("export_command", "")))
    except ValueError:
        return None
    for w in words[3:]:
        for base in (Path.cwd(), REPO):
            p = Path(w) if Path(w).is_absolute() else base / w
            p = p / "last.pt" if p.is_dir() else p
            if p.is_file() and p.suffix == ".pt":
                return p
    return None


def family_eager_networks(ctx: BenchContext) -> tuple[dict | None, str]:
    """({network name: torch eager module}, where they come from) for a bundle that is not two-stream, built by
    train.families as `twostream family bench` builds them; (None, reason) when some network cannot be built."""
    if not torch_available():
        return None, "torch is not installed"
    import json

    import torch

    from train.families.registry import FAMILIES

    b = ctx.bundle
    if b.family not in FAMILIES:
        return None, f"family {b.family!r} has no torch builder in train.families ({', '.join(FAMILIES)})"
    family = FAMILIES[b.family]
    torch.set_num_threads(max(1, ctx.threads))
    model, source = None, "random weights (same architecture: the train.families builder with the bundle's config)"
    ckpt = _family_checkpoint(b)
    if ckpt is not None:
        from train.families.loop import load_family_checkpoint

        try:
            model, _ = load_family_checkpoint(ckpt)
            source = f"checkpoint {ckpt}"
        except (ValueError, KeyError, RuntimeError, OSError):
            model = None
    if model is None:
        try:
            cfg = json.loads(str(b.provenance.get("config", "")))
        except ValueError:
            return None, (f"{b.path}: [provenance] config (the family's training config) is missing, so its torch "
                          "module cannot be rebuilt")
        model = family.build({**family.defaults, **cfg, "init_weights": "none"}, b.num_classes).eval()
    nets = {}
    for net in b.networks:
        kinds = tuple(s.kind for s in net.inputs)
        if net.name == family.onnx_name and kinds == family.kinds:
            nets[net.name] = model.eval()
        elif kinds in (("frame",), ("flow_stack",)) and "efficientnet_lite0" in b.arch:
            from train.models import build_model  # the late stream beside it (hidden: spatial), random weights

            channels = 3 if kinds == ("frame",) else 2 * net.inputs[0].length
            nets[net.name] = build_model("efficientnet_lite0", b.num_classes, in_channels=channels,
                                         weights=None).eval()
            source += f"; {net.name}: efficientnet_lite0, random weights"
        else:
            return None, f"network {net.name} ({' + '.join(kinds)}) of {b.family} has no torch builder here"
    return nets, source
