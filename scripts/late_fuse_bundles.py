"""Late-fuse networks of existing format-2 bundles into one new bundle, without training.

Used for issue 13's "two-stream I3D if it pays": a fold's i3d (RGB clip) network plus the same
fold's `late` temporal (2D Lite0 on a DIS flow_stack) network, fused like `late` (weighted mean of
softmaxes). This is *not* a 3D flow network: the flow side is the 2D temporal stream.

    python scripts/late_fuse_bundles.py OUT --family i3d_flow \
        --net runs/families/bundles/i3d_val01:i3d:1.0 --net runs/families/bundles/late_val01:temporal:1.5

Each --net is BUNDLE:NETWORK:WEIGHT. The ONNX files are copied unchanged; the bundles must agree on
labels, input size and mean/std, and those with a flow_stack network on [flow] (only they set it).
bundle.toml is written by engines.bundle.write_bundle_toml (format 2) and the result is opened with
the runtime's engines.loader.open_bundle before the script reports success.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _spec(text: str) -> tuple[Path, str, float]:
    try:
        bundle, name, weight = text.rsplit(":", 2)
        return Path(bundle), name, float(weight)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--net {text!r}: expected BUNDLE:NETWORK:WEIGHT") from None


def fuse(out: Path, specs: list[tuple[Path, str, float]], family: str) -> Path:
    from engines.bundle import read_bundle, write_bundle_toml
    from engines.loader import open_bundle
    from stream.core.errors import BundleError
    from train.cmd_train import git_commit

    if len(specs) < 2:
        raise BundleError("give at least two --net")
    parts = [(read_bundle(b), name, w) for b, name, w in specs]
    first = parts[0][0]
    for b, _, _ in parts[1:]:
        if (b.labels, b.input_size, b.mean, b.std) != (first.labels, first.input_size, first.mean, first.std):
            raise BundleError(f"{b.path}: labels / input size / mean / std differ from {first.path}")
    out.mkdir(parents=True, exist_ok=True)
    networks, weights, flow, flow_length, sources, commits = [], {}, None, 0, [], {}
    for b, name, w in parts:
        net = b.network(name)
        if name in weights:
            raise BundleError(f"network name {name!r} given twice")
        shutil.copyfile(net.file, out / f"{name}.onnx")
        entry = {"name": name, "file": f"{name}.onnx", "inputs": [s.kind for s in net.inputs]}
        for spec in net.inputs:
            if spec.kind == "clip":
                entry.update(clip_length=spec.length, clip_stride=spec.step)
            if spec.kind == "frame_stack":
                entry["stack_length"] = spec.length
            if spec.kind == "flow_stack":
                if flow is not None and (b.flow, b.flow_length) != (flow, flow_length):
                    raise BundleError(f"{b.path}: [flow] differs from the other flow network's")
                flow, flow_length = b.flow, b.flow_length
        networks.append(entry)
        weights[name] = float(w)
        sources.append({"bundle": str(b.path), "network": name, "weight": float(w),
                        "provenance": {k: str(v) for k, v in b.provenance.items()
                                       if k in ("split", "export_command", "train_command", "temporal_command")}})
        # the commits that trained and exported each network, flat so that tests/test_bundle_provenance.py
        # checks them like any bundle's (a shipped bundle names clean commits)
        commits.update({f"{name}_{k}": str(v) for k, v in b.provenance.items() if k.endswith("commit")})
    (out / "labels.txt").write_text("".join(f"{c}\n" for c in first.labels), encoding="utf-8")
    write_bundle_toml(out, input_size=first.input_size, mean=first.mean, std=first.std, flow=flow,
                      flow_length=flow_length, arch=" + ".join(f"{b.arch}: {n}" for b, n, _ in parts),
                      provenance={"command": " ".join(["python", *sys.argv]), "fuse_git_commit": git_commit(ROOT),
                                  **commits, "late_fused_from": json.dumps(sources)},
                      networks=networks, family=family, fusion={"method": "late", "weights": weights})
    open_bundle(out)  # the runtime's own validation
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--net", type=_spec, action="append", required=True, help="BUNDLE:NETWORK:WEIGHT (repeat)")
    p.add_argument("--family", default="fused", help="model.family of the new bundle")
    args = p.parse_args(argv)
    from stream.core.errors import TwostreamError

    try:
        fuse(args.out, args.net, args.family)
    except TwostreamError as exc:
        print(f"late_fuse_bundles: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
