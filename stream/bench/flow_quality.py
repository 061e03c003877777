"""Flow quality vs speed: temporal-stream (and fused) accuracy on a labelled dataset with flow from each
backend, beside that backend's cost per flow pair.

Each backend is scored by running `twostream eval` itself (a subprocess) on a copy of the bundle whose
bundle.toml names that backend, so the flow, windows and engines are exactly the evaluation's.
Limitation (stated in the output): the bundle's temporal network was trained on its own backend's
flow; a backend that would be as good after training on its own flow can score lower here. Training
one temporal net per backend is the complete experiment and is not done by this command.
Bundles of other families are skipped with the reason in `reports/flow_quality/skipped`.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from engines.bundle import write_bundle_toml
from stream.bench.common import BenchContext, describe_bundle, two_stream
from stream.bench.stages import FLOW_VARIANTS

ROOT = "reports/flow_quality"
REPO = Path(__file__).resolve().parents[2]


def _bundle_with_flow(ctx: BenchContext, b, backend: str, preset: str) -> Path:
    out = ctx.tmp / f"bundle_{backend}_{preset}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for f in (b.spatial_file, b.temporal_file, b.path / "labels.txt"):
        shutil.copyfile(f, out / f.name)
    flow = replace(b.flow, backend=backend, preset=preset if backend == "dis" else b.flow.preset)  # keeps subtract
    prov = {k: v for k, v in b.provenance.items() if isinstance(v, (str, int, float, bool))}
    prov["bench_note"] = f"copy of {b.path} with flow backend {backend}"
    write_bundle_toml(out, input_size=b.input_size, mean=b.mean, std=b.std, flow=flow, flow_length=b.flow_length,
                      fusion_weights=b.fusion_weights, arch=b.arch, provenance=prov)
    return out


def _split_args(ctx: BenchContext, bundle) -> tuple[list[str], str]:
    """The bundle's own validation split when its provenance records a group split (held-out videos), else all
    videos (then the numbers are on the bundle's training data, and the report says so)."""
    import ast
    import re

    desc = str(bundle.provenance.get("split_temporal", ""))
    # train.datasets writes the regex with repr(): regex='actor(\\d+)'
    m = re.search(r"group split regex=('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\") val_groups=([\w,]+)", desc)
    if m:
        try:
            regex = ast.literal_eval(m.group(1))
        except (ValueError, SyntaxError):
            regex = None
        if isinstance(regex, str):
            return (["--split", "group", "--group-regex", regex, "--val-groups", m.group(2)],
                    f"held-out validation videos of the bundle's own split ({desc})")
    return ["--split", "all"], (f"all videos; the bundle's split is {desc!r}: if these videos were used for training, "
                                f"accuracy is on training data")


def run(ctx: BenchContext) -> None:
    r = ctx.report
    if ctx.quality_data is None or not Path(ctx.quality_data).is_dir():
        r.put(f"{ROOT}/skipped", f"no labelled dataset (--quality-data {ctx.quality_data}); set TWOSTREAM_DATA")
        r.note("flow-quality skipped: labelled dataset not found")
        return
    from engines.bundle import read_bundle

    b = read_bundle(ctx.quality_model) if ctx.quality_model else ctx.bundle
    r.put(f"{ROOT}/model", str(b.path))
    if not two_stream(b):
        r.put(f"{ROOT}/skipped", f"{describe_bundle(b)}: flow-quality scores a temporal [flow_stack] stream beside a "
                                 "spatial one per flow backend; defined for two-stream bundles only")
        return
    r.put(f"{ROOT}/data", str(ctx.quality_data))
    r.put(f"{ROOT}/limitation",
          f"the bundle's temporal net was trained on {b.flow.backend}/{b.flow.preset} flow and is evaluated here on "
          f"each backend's flow without retraining; backends other than the training one are disadvantaged")
    split, split_note = _split_args(ctx, b)
    r.put(f"{ROOT}/split", " ".join(split))
    r.put(f"{ROOT}/videos_scored", split_note)
    # TV-L1 costs ~0.1-0.3 s per pair here: cap the frames per video (the same cap for every backend)
    limit = ["--max-frames", "24", "--windows", "3"] if ctx.quick else ["--max-frames", "64", "--windows", "10"]
    r.put(f"{ROOT}/eval_limits", " ".join(limit))
    for backend, preset in FLOW_VARIANTS:
        name = f"{backend}-{preset}" if backend == "dis" else backend
        if ctx.quick and ((backend == "dis" and preset != b.flow.preset) or backend == "tvl1"):
            continue  # --quick: the bundle's preset and Farneback only (TV-L1 alone takes about a minute here)
        bundle_dir = _bundle_with_flow(ctx, b, backend, preset)
        out_json = ctx.tmp / f"eval_{name}.json"
        cmd = [sys.executable, "-m", "stream.cli", "eval", str(ctx.quality_data), "--model", str(bundle_dir),
               "--json", str(out_json), "--threads", str(max(1, ctx.threads)), *split, *limit]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            msg = (proc.stderr.strip().splitlines() or ["?"])[-1][:300]
            r.put(f"{ROOT}/backends/{name}/error", msg)
            ctx.log(f"flow-quality {name}: eval failed: {msg}")
            continue
        res = json.loads(out_json.read_text())
        entry = {"temporal_accuracy": res["temporal"]["accuracy"], "fused_accuracy": res["fused"]["accuracy"],
                 "spatial_accuracy": res["spatial"]["accuracy"], "videos": res["videos"], "subset": res["subset"],
                 "command": "twostream " + " ".join(cmd[3:])}
        cost = f"reports/stages/flow/{name}/ms_per_pair"
        try:
            entry["flow_ms_per_pair"] = r.value(cost)
            entry["flow_cost_from"] = cost
        except KeyError:
            pass
        r.put(f"{ROOT}/backends/{name}", entry)
        ctx.log(f"flow-quality {name}: temporal {entry['temporal_accuracy']:.3f}, fused {entry['fused_accuracy']:.3f}"
                f" on {entry['videos']} videos")
