"""`twostream bench --quick` end to end on a tiny input: a real (random, seeded) bundle, a real video written
with OpenCV, a tiny labelled dataset. Checks the report's structure and that every ratio is the quotient
of two measurements recorded in the same run. No timing thresholds: absolute speed is not asserted."""
from __future__ import annotations

import statistics

import cv2
import numpy as np
import pytest
from conftest import resolve, run_bench


def write_video(path, frames: int = 48, size=(96, 72), seed: int = 0, speed: int = 2) -> None:
    """A textured background with a moving bright square: real motion for optical flow."""
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), (5, 5), 0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, size)
    assert writer.isOpened()
    for i in range(frames):
        img = background.copy()
        x = (5 + speed * i) % (size[0] - 20)
        cv2.rectangle(img, (x, 20), (x + 16, 36), (255, 255, 255), -1)
        writer.write(img)
    writer.release()


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, tiny_bundle):
    tmp = tmp_path_factory.mktemp("bench")
    video = tmp / "clip.avi"
    write_video(video)
    data = tmp / "data"
    for c, label in enumerate(("bend", "wave1")):
        (data / label).mkdir(parents=True)
        write_video(data / label / f"clip{c}.avi", frames=24, seed=c + 1, speed=1 + 2 * c)
    out = tmp / "bench.json"
    return run_bench(["--quick", "--model", str(tiny_bundle), "--video", str(video), "--capacity-video", str(video),
                      "--quality-data", str(data), "--max-sources", "2"], out, timeout=600)


def test_every_sub_report_is_present(bench_run):
    doc, proc = bench_run
    reports = doc["reports"]
    assert set(reports) == {"stages", "engine_vs_eager", "throughput", "capacity", "baselines", "flow_quality",
                            "triton"}
    assert doc["machine"]["cores"] >= 1 and doc["config"]["quick"] is True
    assert {"dis-fast", "farneback", "tvl1"} <= set(reports["stages"]["flow"])
    levels = reports["capacity"]["levels"]
    assert "sources1" in levels
    for level in levels.values():
        assert 0 < level["frames"] <= level["frames_expected"] and level["predictions"] > 0
        assert level["passed"] == (level["latency_ms_p99"] < 150 and level["dropped_frames"] == 0
                                   and level["windows_dropped"] == 0 and level["lost_predictions"] == 0
                                   and level["unaccounted"] == 0 and not level["errors"])
    assert reports["capacity"]["capacity_sources"] in (0, 1, 2)
    steady_levels = [lv for lv in levels.values() if "steady_cpu_ms_per_frame" in lv]
    assert steady_levels, "no capacity level reported its steady per-frame CPU budget"
    for level in steady_levels:
        budget = level["steady_cpu_ms_per_frame"]
        # /proc counts in 10 ms ticks: a --quick slice (~1 s, 25-50 frames) may see 0 ticks of a light stage
        assert all(budget[k] >= 0 for k in ("capture", "flow", "inference")) and budget["total"] > 0, budget
        parts = sum(v for k, v in budget.items() if k not in ("total", "seconds"))
        assert budget["total"] == pytest.approx(parts, abs=1e-3)  # each value rounded to 4 decimals
        # a slice of the run cannot have cost more CPU than the whole run (start-up and drain included)
        frames_in_slice = budget["seconds"] * level["sources"] * 25.0
        for stage in ("capture", "flow", "inference"):
            assert budget[stage] * frames_in_slice / 1000.0 <= level["cpu_seconds_by_stage"][stage] + 0.02
    for name, entry in reports["flow_quality"]["backends"].items():
        assert "error" not in entry, (name, entry)
        assert 0.0 <= entry["temporal_accuracy"] <= 1.0 and entry["videos"] == 2
    assert "ratios (numerator / denominator" in proc.stdout


def test_measurements_are_medians_of_their_samples(bench_run):
    doc, _ = bench_run
    count = 0

    def walk(node):
        nonlocal count
        if isinstance(node, dict):
            if "median" in node and "samples" in node:
                assert node["samples"] and node["median"] == statistics.median(node["samples"])
                count += 1
            for v in node.values():
                walk(v)

    walk(doc["reports"])
    assert count >= 20


def test_every_ratio_divides_two_recorded_measurements(bench_run):
    doc, _ = bench_run
    names = {r["name"] for r in doc["ratios"]}
    for want in ("onnxruntime_fp32_speedup_vs_torch_eager_fp32_batch1", "pipeline_efficiency_1source",
                 "pipeline_speedup_vs_single_process_same_engines_1source", "flow_dis_fast_speedup_vs_tvl1",
                 "flow_dis_fast_speedup_vs_tvl1_source_size", "speedup_vs_seed_recipe_speed_only_1source"):
        assert want in names, names
    for r in doc["ratios"]:
        num, den = resolve(doc, r["numerator"]), resolve(doc, r["denominator"])
        num_v = num["median"] if "median" in num else num["value"]
        den_v = den["median"] if "median" in den else den["value"]
        assert (num_v, den_v) == (r["numerator_value"], r["denominator_value"])
        assert r["value"] == num_v / den_v
        assert r["numerator"] != r["denominator"]
        for m in (num, den):
            if "median" in m:  # a measurement: real samples
                assert len(m["samples"]) >= 1 and all(s > 0 for s in m["samples"])


def test_stage_bound_limits_by_hand():
    """bound_limits against numbers worked out by hand (not by the formula under test)."""
    from stream.bench.throughput import bound_limits

    c = {"c_cap": 1.0, "c_flow": 2.0, "c_inf": 5.0, "c_pub": 0.5}
    lim = bound_limits(c, cores=2, stride=5, sources=1)
    # per-frame work 1 + 2 + (5 + 0.5) / 5 = 4.1 ms -> 2 cores: 2000 / 4.1 frames/s
    assert lim["all_cores"] == pytest.approx(487.80, abs=0.01)
    assert lim["flow_process"] == pytest.approx(500.0) and lim["inference_process"] == pytest.approx(1000.0)
    assert lim["publisher"] == pytest.approx(10000.0) and lim["capture_processes"] == pytest.approx(1000.0)
    assert min(lim, key=lim.get) == "all_cores"


def test_stage_costs_are_measured_once_with_a_spread(bench_run):
    doc, _ = bench_run
    for key, entry in doc["reports"]["throughput"].items():
        if not key.startswith("sources"):
            continue
        bound = entry["stage_bound_frames_per_s"]
        inp = bound["inputs"]
        for c, path in inp["costs"].items():  # every cost is one measurement of the stages report, >= 5 repeats
            m = resolve(doc, path)
            assert path.startswith("reports/stages/") and len(m["samples"]) >= 5, (c, path)
            q = inp["cost_quartiles"]
            assert q["q25"][c] <= m["median"] <= q["q75"][c] and q["median"][c] == m["median"]
        assert bound["low"] <= bound["value"] <= bound["high"]
        assert inp["inference_batch"] >= inp["mean_batch"] - 1e-9 or inp["inference_batch"] == max(
            int(k.replace("batch", "")) for k in doc["reports"]["stages"]["engine"])


def test_efficiency_of_a_real_run_is_at_most_one_within_its_uncertainty(bench_run):
    doc, proc = bench_run
    effs = [r for r in doc["ratios"] if r["name"].startswith("pipeline_efficiency_") and "available" not in r["name"]]
    assert effs
    for r in effs:
        low, high = r["interval"]
        assert low <= r["value"] <= high and r["uncertainty"] == pytest.approx(r["value"] - low)
        assert r["value"] <= 1.0 + r["uncertainty"], r  # the bound bounds (within the spread of its costs)
        assert r["above_one"] is False
        assert len(r["per_run"]) == len(resolve(doc, r["numerator"])["samples"])


def test_targets_refer_to_ratios_or_capacity(bench_run):
    doc, _ = bench_run
    ratios = {r["name"]: r["value"] for r in doc["ratios"]}
    assert doc["targets"]
    for t in doc["targets"]:
        name = t["detail"].split(" = ")[0]
        if name in ratios:
            minimum = float(t["detail"].rsplit(">= ", 1)[1].rstrip(")"))
            assert t["met"] == (ratios[name] >= minimum)
