"""`twostream fit`: bad data is a one-line error; the split keeps groups (and near-duplicates) apart; the
threshold rule; a real end-to-end fit on a tiny real subset (weizmann4 bend/jack of 3 actors plus
k400tiny2 typing clips as background footage) that resumes, and whose background class the runtime
publishes as none.

Real parts: real videos decoded by OpenCV, real training (1 epoch, small input), real ONNX export,
the real pipeline and ZeroMQ subscriber.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from stream.cli import main as cli

pytest.importorskip("torch")


def _link(src, dst_dir, name=None):
    dst_dir.mkdir(parents=True, exist_ok=True)
    os.symlink(src, dst_dir / (name or src.name))


def _one_line_error(capsys, argv, *words):
    assert cli([*argv, "--no-progress"] if "--no-progress" not in argv else argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


# --- bad data --------------------------------------------------------------------------------------
def test_one_class_is_an_error(shared_data, tmp_path, capsys):
    for a in range(3):
        _link(shared_data / "weizmann4" / "bend" / f"actor{a}_bend.mp4", tmp_path / "d" / "bend")
    _one_line_error(capsys, ["fit", str(tmp_path / "d"), "--out", str(tmp_path / "o")], "1 class folder(s) (bend)",
                    "at least 2 classes")


def test_empty_class_and_corrupt_file_are_errors_naming_them(shared_data, tmp_path, capsys):
    d = tmp_path / "d"
    for a in range(3):
        _link(shared_data / "weizmann4" / "bend" / f"actor{a}_bend.mp4", d / "bend")
    (d / "empty").mkdir()
    (d / "jack").mkdir()
    _link(shared_data / "weizmann4" / "jack" / "actor0_jack.mp4", d / "jack")
    (d / "jack" / "actor1_jack.mp4").write_bytes(os.urandom(4000))  # corrupt: counted, not usable
    (d / "jack" / "readme.txt").write_text("notes")
    err = _one_line_error(capsys, ["fit", str(d), "--out", str(tmp_path / "o")], "empty (0)", "jack (1)",
                          "at least 2", "2 file(s) skipped")
    assert "bend" not in err.split("videos:")[1]
    out = capsys.readouterr().out
    # nothing was created for a fit that cannot start
    assert not (tmp_path / "o" / "work" / "extract").exists()
    del out


def test_scan_lists_skipped_files(shared_data, tmp_path):
    from train.fit import scan_data

    d = tmp_path / "d"
    for cls in ("bend", "jack"):
        for a in range(2):
            _link(shared_data / "weizmann4" / cls / f"actor{a}_{cls}.mp4", d / cls)
    (d / "jack" / "clip.mp4").write_bytes(b"\x00" * 100)
    (d / "jack" / "labels.csv").write_text("x")
    (d / "stray.mp4").write_text("x")
    scan = scan_data(d, progress=False)
    assert {c: len(v) for c, v in scan.classes.items()} == {"bend": 2, "jack": 2}
    why = {os.path.basename(p): w for p, w in scan.skipped}
    assert why == {"clip.mp4": "cannot be opened as a video", "labels.csv": "not a video file (by its extension)",
                   "stray.mp4": "not inside a class folder"}


# --- split ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("names,pattern", [
    (["actor0_bend.mp4", "actor1_bend.mp4", "actor2_jack.mp4"], r"actor[_-]?(\d+)"),
    (["person01_boxing_d1.avi", "person02_boxing_d1.avi"], r"person[_-]?(\d+)"),
    (["v_ApplyLipstick_g08_c01.avi", "v_ApplyLipstick_g09_c02.avi"], r"_g(\d+)_"),
    (["clip_a.mp4", "clip_b.mp4"], None),
    (["actor1_a.mp4", "actor1_b.mp4"], None),  # one group only: no group split
    (["actor1_a.mp4", "someone_b.mp4"], None),  # not every name
])
def test_group_pattern_detection(names, pattern):
    from train.fit import detect_group_regex

    assert detect_group_regex(names) == pattern


def test_group_split_keeps_actors_apart_and_random_split_keeps_duplicates_together(shared_data, tmp_path):
    from train.fit import Scan, choose_split

    w = shared_data / "weizmann4"
    classes = {c: [w / c / f"actor{a}_{c}.mp4" for a in range(7)] for c in ("bend", "jack")}
    split = choose_split(Scan(tmp_path, classes), val_fraction=0.3, seed=1)
    val = set(split.val_groups)
    side = {}
    for _, video, gid in split.items:
        actor = video.name.split("_")[0]
        side.setdefault(actor, set()).add(gid in val)
    assert all(len(s) == 1 for s in side.values())  # no actor on both sides
    assert sum(1 for s in side.values() if True in s) == 2  # round(0.3 * 7) actors validate
    # no group in the names: stratified random; a copy of a clip stays on the side of its original
    k = shared_data / "k400tiny2" / "typing"
    typing = sorted(k.glob("*.mp4"))[:4]
    copy = tmp_path / "copy_of_first.mp4"
    shutil.copy(typing[0], copy)
    other = sorted((shared_data / "k400tiny2" / "doing_exercises").glob("*.mp4"))[:4]
    split = choose_split(Scan(tmp_path, {"typing": typing + [copy], "exercise": other}), val_fraction=0.4, seed=0)
    gid = {v: g for _, v, g in split.items}
    assert gid[copy] == gid[typing[0]]
    assert "near-duplicate" in split.description


# --- threshold -----------------------------------------------------------------------------------------
def test_threshold_rule_takes_the_smallest_meeting_the_false_alarm_target():
    from train.fit import pick_threshold, threshold_table

    labels = ("_background", "bend", "jack")
    # an action clip: bend at 0.8 throughout; background: bend 0.5 / jack 0.5-ish alternating -> alarms
    action = [(np.tile([0.1, 0.8, 0.1], (10, 1)), "bend")]
    bg = np.array([[0.0, 0.55, 0.45], [0.0, 0.45, 0.55]] * 5)
    rows = threshold_table(action, [(bg, 0.5)], labels, kind="none", thresholds=(0.0, 0.5, 0.6, 0.9))
    by_t = {r["min_score"]: r for r in rows}
    # t = 0: every background window is an action and changes each window -> 10 alarms in 0.5 min = 20/min
    assert by_t[0.0]["false_alarms_per_min"] == pytest.approx(20.0) and by_t[0.0]["accuracy"] == 1.0
    # t = 0.6: background all none, bend 0.8 still decided
    assert by_t[0.6]["false_alarms_per_min"] == 0.0 and by_t[0.6]["background_action_rate"] == 0.0
    assert by_t[0.6]["accuracy"] == 1.0
    # t = 0.9: the action is lost too
    assert by_t[0.9]["accuracy"] == 0.0
    chosen, met = pick_threshold(rows, target_fa=1.0)
    assert met and chosen["min_score"] == 0.6
    # 0 and 0.5 only: the 0.55 windows still alternate at 0.5 (20/min both): target missed, and of the equally
    # bad ones the smaller threshold (it loses no accuracy) is taken
    assert by_t[0.5]["false_alarms_per_min"] == pytest.approx(20.0)
    chosen, met = pick_threshold(rows[:2], target_fa=1.0)
    assert not met and chosen["min_score"] == 0.0


# --- end to end ----------------------------------------------------------------------------------------
def test_fit_end_to_end_tiny_real_subset_resumes_and_publishes_background_as_none(shared_data, tmp_path, capsys,
                                                                                  repo_root):
    from engines.bundle import read_bundle
    from train.engine import load_checkpoint

    d = tmp_path / "data"
    for cls in ("bend", "jack"):
        for a in range(3):
            _link(shared_data / "weizmann4" / cls / f"actor{a}_{cls}.mp4", d / cls)
    bg = tmp_path / "other"
    for n in (1, 2, 4, 5):
        _link(shared_data / "k400tiny2" / "typing" / f"typing{n}.mp4", bg)
    (d / "jack" / "broken.mp4").write_bytes(os.urandom(3000))
    out = tmp_path / "bundle"
    argv = ["fit", str(d), "--out", str(out), "--background", str(bg), "--epochs", "1", "--size", "32",
            "--max-frames", "24", "--flow-length", "3", "--arch", "mobilenet_v3_small", "--no-quantize",
            "--val-fraction", "0.34", "--no-progress"]
    assert cli(argv) == 0
    printed = capsys.readouterr().out
    assert "skipped: " in printed and "broken.mp4" in printed and "none threshold:" in printed

    b = read_bundle(out)
    assert b.labels == ("_background", "bend", "jack")
    assert b.policy["background"] == "_background" and 0.0 <= b.policy["min_score"] < 1.0
    report = json.loads((out / "report" / "fit.json").read_text())
    assert [s["file"].rsplit("/", 1)[1] for s in report["skipped"]] == ["broken.mp4"]
    assert report["classes"] == {"bend": 3, "jack": 3, "_background": 4}
    for name in ("summary.md", "confusion.png", "curves_spatial.png", "curves_temporal.png", "threshold.png",
                 "eval.json"):
        assert (out / "report" / name).stat().st_size > 0, name
    assert "| bend |" in (out / "report" / "summary.md").read_text()
    # one actor validates; no actor on both sides; background clips split too
    meta = load_checkpoint(out / "work" / "temporal" / "last.pt")["meta"]
    train_actors = {r.split("__")[1].split("_")[0] for r in meta["train_items"] if not r.startswith("_background")}
    evaluated = json.loads((out / "report" / "eval.json").read_text())["per_video"]
    val_actors = {r["video"].split("__")[1].split("_")[0] for r in evaluated if not r["video"].startswith("_bg")}
    val_actors.discard("typing1.mp4"), val_actors.discard("typing2.mp4")
    val_actors = {a for a in val_actors if a.startswith("actor")}
    assert len(val_actors) == 1 and not (val_actors & train_actors)
    assert any(r["label"] == "_background" for r in evaluated)

    # re-running the same command resumes: nothing is trained or exported again
    stamp = [(out / "work" / s / "last.pt").stat().st_mtime_ns for s in ("spatial", "temporal")]
    onnx = (out / "spatial.onnx").stat().st_mtime_ns
    assert cli(argv) == 0
    again = capsys.readouterr().out
    assert "already trained" in again and "export: done before" in again
    assert [(out / "work" / s / "last.pt").stat().st_mtime_ns for s in ("spatial", "temporal")] == stamp
    assert (out / "spatial.onnx").stat().st_mtime_ns == onnx
    # other arguments in the same folder: a one-line error, not a silent mix
    _one_line_error(capsys, argv + ["--epochs", "2"], "holds a fit made with other arguments")
    # --resume continues with the recorded arguments, no DATA needed
    assert cli(["fit", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert "resuming: twostream fit" in capsys.readouterr().out
    _one_line_error(capsys, ["fit", "--out", str(tmp_path / "nothing"), "--resume"], "holds no fit to continue")

    # the runtime publishes the background class as none, never as "_background"
    from stream.clients.client import Change, Prediction
    from tests.conftest import run_pipeline

    cfg = tmp_path / "c.toml"
    cfg.write_text('[policy]\nkind = "none"\nmin_score = 0.0\n')  # the bundle's background still applies
    proc, msgs = run_pipeline(["--model", str(out), "--config", str(cfg), "--pace", "fast", "--max-frames", "40",
                               f"v={bg / 'typing1.mp4'}"], expect_eos=1)
    assert proc.returncode == 0, proc.stderr[-1500:]
    preds = [m for m in msgs if isinstance(m, Prediction)]
    assert preds
    for p in preds:
        assert p.label == ("none" if p.fused.label == "_background" else p.fused.label)
    assert "_background" not in {c.to_label for c in msgs if isinstance(c, Change)}


# --- eval counts none ------------------------------------------------------------------------------------
def test_eval_counts_none_as_a_miss_on_actions_and_correct_on_background(shared_data, tiny_bundle, tmp_path, capsys):
    d = tmp_path / "data"
    for cls in ("bend", "jack"):
        for a in range(2):
            _link(shared_data / "weizmann4" / cls / f"actor{a}_{cls}.mp4", d / cls)
    for n in (1, 2):
        _link(shared_data / "k400tiny2" / "typing" / f"typing{n}.mp4", d / "_background")
    results = {}
    for name, policy in (("off", "min_score = 0.0"), ("high", "min_score = 0.99")):
        b = tmp_path / name
        shutil.copytree(tiny_bundle, b)
        (b / "labels.txt").write_text("bend\njack\nwave1\n_background\n")
        (b / "bundle.toml").write_text((b / "bundle.toml").read_text() + f"\n[policy]\n{policy}\n")
        out = tmp_path / f"{name}.json"
        assert cli(["eval", str(d), "--model", str(b), "--max-frames", "60", "--windows", "3", "--json", str(out)]) == 0
        results[name] = json.loads(out.read_text())
    capsys.readouterr()
    off, high = results["off"], results["high"]
    assert off["videos"] == high["videos"] == 6
    # threshold off: "decided" is the fused argmax, the background class counting as none
    assert off["decided"]["accuracy"] == pytest.approx(off["fused"]["accuracy"])
    # min_score 0.99 (a random net never reaches it): every video decided none -> the 4 action videos are misses,
    # the 2 background videos correct, and not one background window is an action: no false alarm
    assert [r["decided"] for r in high["per_video"]] == ["none"] * 6
    assert high["decided"]["accuracy"] == pytest.approx(2 / 6) and high["decided"]["actions_decided_none"] == 4
    assert high["decided"]["background_videos"] == 2
    assert high["decided"]["false_alarms"] == 0 and high["decided"]["background_action_window_rate"] == 0.0
    # 2 x 60 frames at 29.97 fps of background footage
    assert high["decided"]["background_minutes"] == pytest.approx(120 / 29.97 / 60, rel=0.01)
    assert off["decided"]["background_action_window_rate"] is not None


def test_time_budget_parsing():
    from stream.core.errors import ConfigError
    from train.fit import parse_duration

    assert parse_duration("10m") == 600 and parse_duration("90s") == 90 and parse_duration("1.5h") == 5400
    assert parse_duration("45") == 45
    with pytest.raises(ConfigError, match="--time-budget 'ten minutes'"):
        parse_duration("ten minutes")


# --- other families (issue 13) ------------------------------------------------------------------------------
def _tiny_subset(shared_data, tmp_path):
    """bend/jack of weizmann4 actors 0-2 and 4 k400tiny2 typing clips as background: the subset above."""
    d, bg = tmp_path / "data", tmp_path / "other"
    for cls in ("bend", "jack"):
        for a in range(3):
            _link(shared_data / "weizmann4" / cls / f"actor{a}_{cls}.mp4", d / cls)
    for n in (1, 2, 4, 5):
        _link(shared_data / "k400tiny2" / "typing" / f"typing{n}.mp4", bg)
    return d, bg


def _held_out(out, run: str, videos: int) -> None:
    """The evaluated videos are the validation split: one actor, none of whose videos trained `run`."""
    from train.engine import load_checkpoint

    trained = load_checkpoint(out / "work" / run / "last.pt")["meta"]["train_items"]
    evaluated = [r["video"] for r in json.loads((out / "report" / "eval.json").read_text())["per_video"]]
    assert len(evaluated) == videos and not set(evaluated) & set(trained)

    def actors(rels):
        return {r.split("__")[1].split("_")[0] for r in rels if "__actor" in r}

    assert len(actors(evaluated)) == 1 and not actors(evaluated) & actors(trained)


def test_fit_family_i3d_end_to_end_with_threshold_and_runtime(shared_data, tmp_path, capsys):
    from engines.bundle import read_bundle
    from engines.loader import open_bundle

    d, bg = _tiny_subset(shared_data, tmp_path)
    out = tmp_path / "bundle"
    argv = ["fit", str(d), "--out", str(out), "--background", str(bg), "--family", "i3d", "--family-epochs", "1",
            "--size", "32", "--max-frames", "24", "--val-fraction", "0.34", "--batch-size", "2", "--no-progress"]
    assert cli(argv) == 0
    printed = capsys.readouterr().out
    assert "train the i3d network" in printed and "none threshold:" in printed

    b = read_bundle(out)
    assert b.family == "i3d" and [n.name for n in b.networks] == ["i3d"] and not b.needs_flow
    assert b.labels == ("_background", "bend", "jack")
    assert b.policy["background"] == "_background" and 0.0 <= b.policy["min_score"] < 1.0  # the threshold phase ran
    assert list(open_bundle(out).engines) == ["i3d"]  # the loader validates every graph against the description
    assert not (out / "work" / "spatial").exists() and not (out / "work" / "temporal").exists()  # no late streams

    report = json.loads((out / "report" / "fit.json").read_text())
    assert report["family"] == "i3d" and report["networks"] == ["i3d"] and list(report["training"]) == ["i3d"]
    ev = report["evaluation"]
    assert set(ev) == {"videos", "i3d", "fused", "per_class"}
    assert ev["videos"] == report["val_videos"] > 0  # held-out numbers: the validation split, every video scored
    assert 0.0 <= ev["i3d"]["accuracy"] <= 1.0 and ev["fused"]["accuracy"] == ev["i3d"]["accuracy"]  # single fusion
    assert report["threshold"]["chosen"] is True and report["quantize"] in ("int8", "none", "i3d int8", "i3d fp32")
    _held_out(out, "i3d", ev["videos"])
    md = (out / "report" / "summary.md").read_text()
    assert "| class | videos | i3d | fused |" in md and "family i3d" in md
    for name in ("summary.md", "confusion.png", "curves_i3d.png", "threshold.png"):
        assert (out / "report" / name).stat().st_size > 0, name

    # resumes: nothing trained or exported again
    onnx = (out / "i3d.onnx").stat().st_mtime_ns
    assert cli(argv) == 0
    again = capsys.readouterr().out
    assert "i3d: 1 epochs already trained" in again and "export: done before" in again
    assert (out / "i3d.onnx").stat().st_mtime_ns == onnx

    # the runtime runs it and publishes one stream per network
    from stream.clients.client import Prediction
    from tests.conftest import run_pipeline

    proc, msgs = run_pipeline(["--model", str(out), "--pace", "fast", "--max-frames", "30", f"v={bg / 'typing1.mp4'}"],
                              expect_eos=1)
    assert proc.returncode == 0, proc.stderr[-1500:]
    preds = [m for m in msgs if isinstance(m, Prediction)]
    assert preds and all(set(p.raw["streams"]) == {"i3d"} for p in preds)


def test_fit_family_hidden_late_fuses_the_fit_spatial_stream(shared_data, tmp_path, capsys):
    from engines.bundle import read_bundle

    d, _ = _tiny_subset(shared_data, tmp_path)
    out = tmp_path / "bundle"
    assert cli(["fit", str(d), "--out", str(out), "--family", "hidden", "--epochs", "1", "--family-epochs", "1",
                "--size", "32", "--max-frames", "24", "--flow-length", "3", "--val-fraction", "0.34",
                "--batch-size", "2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    b = read_bundle(out)
    assert b.family == "hidden" and [n.name for n in b.networks] == ["spatial", "hidden"] and not b.needs_flow
    assert b.network("hidden").inputs[0].kind == "frame_stack" and b.network("hidden").inputs[0].length == 3
    assert b.fusion.method == "late" and set(b.fusion_weights) == {"spatial", "hidden"}
    report = json.loads((out / "report" / "fit.json").read_text())
    assert list(report["training"]) == ["spatial", "temporal", "hidden"] and report["networks"] == ["spatial", "hidden"]
    assert set(report["evaluation"]) == {"videos", "spatial", "hidden", "fused", "per_class"}
    assert report["threshold"]["chosen"] is False and "no background footage" in report["threshold"]["why"]
    _held_out(out, "hidden", report["evaluation"]["videos"])
    assert "| class | videos | spatial | hidden | fused |" in (out / "report" / "summary.md").read_text()
    head = [line for line in printed.splitlines() if line.startswith("class ")]
    assert head and head[0].split() == ["class", "videos", "spatial", "hidden", "fused"]
    # the recipe: MotionNet trains twice the end-to-end epochs without labels first (the zoo's 30 + 15)
    log = (out / "work" / "log.txt").read_text()
    assert "motion epoch=1 " in log and "motion epoch=2 " not in log


def test_fit_family_options_are_checked(shared_data, tmp_path, capsys):
    d, _ = _tiny_subset(shared_data, tmp_path)
    base = ["fit", str(d), "--out", str(tmp_path / "o")]
    _one_line_error(capsys, base + ["--family", "i3d", "--time-budget", "5m"], "--time-budget", "--family late only")
    _one_line_error(capsys, base + ["--family", "convfusion", "--arch", "resnet18"], "--arch resnet18",
                    "efficientnet_lite0")
    assert not (tmp_path / "o").exists()
