"""Flow quality vs speed: temporal-stream (and fused) accuracy on a labelled dataset with flow from each
backend, beside that backend's cost per flow pair.

Each backend is scored by running `twostream eval` itself (a subprocess) on a copy of the bundle whose
bundle.toml names that backend, so the flow, windows and engines are exactly the evaluation's.
Limitation (stated in the output): the bundle's temporal network was trained on its own backend's
flow; a backend that would be as good after training on its own flow can score lower here. Training
one temporal net per backend is the complete experiment and is not done by this command.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from engines.bundle import write_bundle_toml
from stream.bench.common import BenchContext
from stream.bench.stages import FLOW_VARIANTS
from stream.flow import FlowSettings

ROOT = "reports/flow_quality"
REPO = Path(__file__).resolve().parents[2]


def _bundle_with_flow(ctx: BenchContext, backend: str, preset: str) -> Path:
    b = ctx.bundle
    out = ctx.tmp / f"bundle_{backend}_{preset}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for f in (b.spatial_file, b.temporal_file, b.path / "labels.txt"):
        shutil.copyfile(f, out / f.name)
    flow = FlowSettings(backend=backend, preset=preset if backend == "dis" else b.flow.preset, bound=b.flow.bound,
                        stacking=b.flow.stacking)
    prov = {k: v for k, v in b.provenance.items() if isinstance(v, (str, int, float, bool))}
    prov["bench_note"] = f"copy of {b.path} with flow backend {backend}"
    write_bundle_toml(out, input_size=b.input_size, mean=b.mean, std=b.std, flow=flow, flow_length=b.flow_length,
                      fusion_weights=b.fusion_weights, arch=b.arch, provenance=prov)
    return out


def _split_args(ctx: BenchContext) -> list[str]:
    """weizmann4-style names (actorN): the group split the shipped model uses (validation actors); else all."""
    data = ctx.quality_data
    names = [p.name for p in data.rglob("*") if p.is_file()]
    if any("actor" in n for n in names):
        groups = ctx.cache.get("quality_val_groups") or ("6" if ctx.quick else "5,6")
        return ["--split", "group", "--group-regex", r"actor(\d+)", "--val-groups", groups]
    return ["--split", "all"]


def run(ctx: BenchContext) -> None:
    r = ctx.report
    if ctx.quality_data is None or not Path(ctx.quality_data).is_dir():
        r.put(f"{ROOT}/skipped", f"no labelled dataset (--quality-data {ctx.quality_data}); set TWOSTREAM_DATA")
        r.note("flow-quality skipped: labelled dataset not found")
        return
    b = ctx.bundle
    r.put(f"{ROOT}/data", str(ctx.quality_data))
    r.put(f"{ROOT}/limitation",
          f"the bundle's temporal net was trained on {b.flow.backend}/{b.flow.preset} flow and is evaluated here on "
          f"each backend's flow without retraining; backends other than the training one are disadvantaged")
    split = _split_args(ctx)
    r.put(f"{ROOT}/split", " ".join(split))
    limit = ["--max-frames", "24", "--windows", "3"] if ctx.quick else []
    for backend, preset in FLOW_VARIANTS:
        name = f"{backend}-{preset}" if backend == "dis" else backend
        if ctx.quick and backend == "dis" and preset != b.flow.preset:
            continue
        bundle_dir = _bundle_with_flow(ctx, backend, preset)
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
