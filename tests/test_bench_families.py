"""`twostream bench --quick` on a bundle of another family (issue 13): a tiny real i3d bundle (trained two steps on
real weizmann4 clips, exported by `twostream family export`), benched on a real weizmann4 video. Checks that each
sub-report is meaningful for it (per-network engine costs, no flow stage, the bound without a flow process, pipeline
runs) and that two-stream-only sub-reports say `skipped: <reason>`. No timing thresholds."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from conftest import resolve, run_bench, tiny_weizmann_extraction  # noqa: E402

from stream.cli import main as cli  # noqa: E402

SPLIT = ["--split", "group", "--group-regex", r"actor(\d+)", "--val-groups", "2"]


@pytest.fixture(scope="module")
def i3d_bundle(shared_data, tmp_path_factory):
    extraction = tiny_weizmann_extraction(shared_data, tmp_path_factory, name="w4benchfam", size=32, max_frames=24)
    tmp = tmp_path_factory.mktemp("i3d")
    run, bundle = tmp / "run", tmp / "bundle"
    assert cli(["family", "train", "i3d", str(extraction), "--out", str(run), "--epochs", "1", "--max-steps", "2",
                "--batch-size", "2", "--clip-length", "4", "--threads", "1", *SPLIT]) == 0
    assert cli(["family", "export", str(run), str(bundle), "--windows", "4"]) == 0
    return bundle


@pytest.fixture(scope="module")
def bench_i3d(i3d_bundle, shared_data, tmp_path_factory):
    video = next((shared_data / "weizmann4" / "wave1").glob("*"))
    out = tmp_path_factory.mktemp("bench_i3d") / "bench.json"
    return run_bench(["--quick", "--model", str(i3d_bundle), "--video", str(video), "--capacity-video", str(video),
                      "--capacity-seconds", "2", "--max-sources", "1", "--threads", "1",
                      "--only", "stages,engine-vs-eager,throughput,capacity,baselines,flow-quality"], out, timeout=900)


def test_stage_costs_of_an_i3d_bundle_have_no_flow_and_a_real_inference_cost(bench_i3d):
    doc, _ = bench_i3d
    st = doc["reports"]["stages"]
    assert doc["config"]["bundle"]["family"] == "i3d" and doc["config"]["bundle"]["networks"] == ["i3d"]
    assert st["networks"] == {"i3d": ["clip(T=4, stride=1)"]}
    assert "flow_stage_ms_per_frame" not in st and "flow" not in st  # no flow stage, no flow backend table
    assert "flow_stack" in st["flow_skipped"]
    for batch in ("batch1", "batch4"):
        e = st["engine"][batch]
        assert e["i3d_ms_per_window"]["median"] > 0 and e["inference_ms_per_window"]["median"] > 0
        assert "spatial_ms_per_window" not in e and "temporal_ms_per_window" not in e
        assert e["inference_ms_per_window"]["median"] >= e["i3d_ms_per_window"]["median"]  # prepare + i3d + fusion
    assert st["capture_ms_per_frame"]["median"] > 0 and st["publish_ms_per_window"]["median"] > 0


def test_bound_of_a_flowless_bundle_has_no_flow_process(bench_i3d):
    doc, _ = bench_i3d
    tp = doc["reports"]["throughput"]
    for key in ("sources1", "sources2"):
        m = tp[key]
        assert all(s > 0 for s in m["frames_per_s"]["samples"]) and not m["errors"], m["errors"]
        inp = m["stage_bound_frames_per_s"]["inputs"]
        assert set(inp["costs"]) == {"c_cap", "c_inf", "c_pub"}
        assert "flow_process" not in inp["limits_frames_per_s"] and inp["binding"] in inp["limits_frames_per_s"]
        assert inp["costs"]["c_inf"].startswith("reports/stages/engine/batch")
    names = {r["name"] for r in doc["ratios"]}
    assert {"pipeline_efficiency_1source", "pipeline_efficiency_2sources"} <= names
    for r in doc["ratios"]:  # every ratio divides two measurements of this run
        num, den = resolve(doc, r["numerator"]), resolve(doc, r["denominator"])
        assert r["value"] == (num.get("median", num.get("value")) / den.get("median", den.get("value")))


def test_capacity_runs_an_i3d_bundle(bench_i3d):
    doc, _ = bench_i3d
    cap = doc["reports"]["capacity"]
    level = cap["levels"]["sources1"]
    assert level["predictions"] > 0 and 0 < level["frames"] <= level["frames_expected"] == cap["frames_per_source"]
    assert not level["errors"], level["errors"]


def test_bound_limits_without_flow_by_hand():
    from stream.bench.throughput import bound_limits

    lim = bound_limits({"c_cap": 1.0, "c_inf": 20.0, "c_pub": 0.5}, cores=2, stride=5, sources=1)
    # per-frame work 1 + (20 + 0.5) / 5 = 5.1 ms -> 2 cores: 2000 / 5.1; inference process 5000 / 20 = 250
    assert set(lim) == {"all_cores", "inference_process", "publisher", "capture_processes"}
    assert lim["all_cores"] == pytest.approx(392.157, abs=0.001) and lim["inference_process"] == pytest.approx(250.0)
    assert min(lim, key=lim.get) == "inference_process"


def test_engine_report_lists_exactly_the_bundle_networks(bench_i3d):
    doc, proc = bench_i3d
    ev = doc["reports"]["engine_vs_eager"]
    assert ev["family"] == "i3d" and ev["networks"] == ["i3d"]
    for batch in ("batch1", "batch4"):
        assert set(ev[batch]["networks"]) == {"i3d"}
        net = ev[batch]["networks"]["i3d"]
        assert net["onnxruntime_ms_per_window"]["median"] > 0
        assert ev[batch]["onnxruntime_ms_per_window"]["samples"] == net["onnxruntime_ms_per_window"]["samples"]
        # the family's torch module (train.families) timed beside it, on the same inputs
        assert net["torch_eager_ms_per_window"]["median"] > 0
    assert "torch_eager_skipped" not in ev and ev["eager_source"]
    assert set(ev["parity"]) == {"i3d_max_abs_diff"}
    assert "engine batch1 i3d: onnxruntime ms/window" in proc.stdout


def test_two_stream_only_reports_are_skipped_with_a_reason(bench_i3d):
    doc, proc = bench_i3d
    reps = doc["reports"]
    assert set(reps["baselines"]) == {"skipped"} and "two-stream" in reps["baselines"]["skipped"]
    assert "family i3d" in reps["baselines"]["skipped"]
    assert reps["flow_quality"]["skipped"].startswith("family i3d") and "backends" not in reps["flow_quality"]
    lines = [x for x in proc.stdout.splitlines() if "skipped: " in x]
    assert {x.split()[0] for x in lines} == {"baselines", "flow_quality", "stages"}
    assert all(len(x.split("skipped: ", 1)[1]) > 20 for x in lines)
    assert "Traceback" not in proc.stderr and "BundleError" not in proc.stderr
