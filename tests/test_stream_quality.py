"""Streaming quality: annotations, decision policies, metric arithmetic, development streams.

Expected numbers in the metric tests are counted by hand in the comments next to them.
"""
from __future__ import annotations

import json
import subprocess
from itertools import pairwise

import cv2
import numpy as np
import pytest
from conftest import count_frames

from stream.core.errors import ConfigError
from stream.core.policy import PolicySettings, decide_all, make_policy
from stream.quality.annotations import (
    AnnotationError,
    annotation_from_dict,
    load_annotation,
    read_activitynet,
    read_annotation,
    read_thumos,
)
from stream.quality.metrics import (
    flicker,
    merge_scores,
    p90,
    score_stream,
    settled_accuracy,
    summarize,
    switch_delays,
    window_accuracy,
)


# --- annotations -------------------------------------------------------------------------------
def _write(path, doc):
    path.write_text(json.dumps(doc))
    return path


ABA = {"fps": 10, "frames": 30, "segments": [{"label": "a", "start": 0, "end": 10},
                                               {"label": "a", "start": 20, "end": 30},  # any order
                                               {"label": "b", "start": 10, "end": 20}]}


def test_annotation_parse_label_at_and_changes(tmp_path):
    ann = load_annotation(_write(tmp_path / "v.json", ABA))
    assert ann.fps == 10.0 and ann.frames == 30
    assert [(s.label, s.start, s.end) for s in ann.segments] == [("a", 0, 10), ("b", 10, 20), ("a", 20, 30)]
    assert [ann.label_at(f) for f in (0, 9, 10, 19, 20, 29, 30, -1)] == ["a", "a", "b", "b", "a", "a", None, None]
    assert [(c.frame, c.previous, c.to, c.until) for c in ann.changes()] == [(10, "a", "b", 20), (20, "b", "a", 30)]


def test_annotation_gaps_and_same_label_runs():
    ann = annotation_from_dict({"fps": 25, "frames": 100, "segments": [
        {"label": "x", "start": 0, "end": 20}, {"label": "x", "start": 30, "end": 40},
        {"label": "y", "start": 50, "end": 60}, {"label": "y", "start": 60, "end": 70}]})
    assert ann.label_at(25) is None and ann.label_at(45) is None and ann.label_at(99) is None
    # x..gap..x is one action; the change to y is dated at its first frame and runs over both y segments
    assert [(c.frame, c.previous, c.to, c.until) for c in ann.changes()] == [(50, "x", "y", 70)]


@pytest.mark.parametrize("doc, words", [
    ({**ABA, "segments": [{"label": "a", "start": 0, "end": 12}, {"label": "b", "start": 10, "end": 20}]},
     ["overlap", "segments[0]", "segments[1]"]),
    ({**ABA, "segments": [{"label": "a", "start": 0, "end": 31}]}, ["out of range", "segments[0]"]),
    ({**ABA, "segments": [{"label": "a", "start": 5, "end": 5}]}, ["out of range"]),
    ({**ABA, "segments": [{"label": "a", "start": 0, "end": 5, "confidence": 1}]}, ["unknown key", "confidence"]),
    ({**ABA, "fsp": 10}, ["unknown key", "fsp"]),
    ({"fps": 10, "segments": []}, ["missing key 'frames'"]),
    ({**ABA, "fps": 0}, ["fps"]),
    ({**ABA, "segments": [{"label": "a", "start": 0.0, "end": 5}]}, ["integer"]),
    ({**ABA, "segments": [{"label": "", "start": 0, "end": 5}]}, ["label"]),
])
def test_annotation_errors_name_file_and_problem(tmp_path, doc, words):
    path = _write(tmp_path / "bad.json", doc)
    with pytest.raises(AnnotationError) as info:
        load_annotation(path)
    message = str(info.value)
    assert str(path) in message
    for w in words:
        assert w in message


def test_annotation_not_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{nope")
    with pytest.raises(AnnotationError, match="not valid JSON"):
        load_annotation(path)
    with pytest.raises(AnnotationError, match="does not exist"):
        load_annotation(tmp_path / "missing.json")


def test_activitynet_seconds_to_frames(tmp_path):
    path = _write(tmp_path / "anet.json", {"version": "1.3", "database": {
        "abc": {"duration": 4.0, "subset": "validation", "annotations": [
            {"segment": [2.52, 3.9], "label": "Long jump"}, {"segment": [0.0, 1.0], "label": "Running"}]},
        "other": {"duration": 1.0, "annotations": []}}})
    ann = read_activitynet(path, "v_abc", fps=10)  # "v_" prefix of the video file is stripped
    assert ann.frames == 40  # 4.0 s * 10 fps
    # nearest frame: 0.0 -> 0, 1.0 -> 10, 2.52 -> 25, 3.9 -> 39
    assert [(s.label, s.start, s.end) for s in ann.segments] == [("Running", 0, 10), ("Long jump", 25, 39)]
    assert read_annotation(path, video="abc", fps=10, frames=50).frames == 50
    with pytest.raises(AnnotationError, match="'nope' is not in the database"):
        read_activitynet(path, "nope", fps=10)
    bad = _write(tmp_path / "anet2.json", {"database": {"abc": {"duration": 4.0, "annotations": [
        {"segment": [0.0, 2.0], "label": "A"}, {"segment": [1.5, 3.0], "label": "B"}]}}})
    with pytest.raises(AnnotationError, match="overlap") as info:
        read_activitynet(bad, "abc", fps=10)
    assert "anet2.json" in str(info.value)


def test_thumos_per_class_files(tmp_path):
    (tmp_path / "CliffDiving_val.txt").write_text("video_validation_1 1.0 2.0\nvideo_validation_2 0.5 1.0\n")
    (tmp_path / "Billiards_val.txt").write_text("video_validation_1  3.05 4.5 \n\nvideo_validation_1 0.0 0.5\n")
    (tmp_path / "Ambiguous_val.txt").write_text("video_validation_1 0.2 3.5\n")  # skipped: not an action
    ann = read_thumos(tmp_path, "video_validation_1", fps=20, frames=100)
    # 0.0-0.5 s -> 0..10, 1.0-2.0 s -> 20..40, 3.05-4.5 s -> 61..90 at 20 fps
    assert [(s.label, s.start, s.end) for s in ann.segments] == [("Billiards", 0, 10), ("CliffDiving", 20, 40),
                                                                 ("Billiards", 61, 90)]
    assert read_annotation(tmp_path, video="video_validation_2", fps=20, frames=100).segments[0].start == 10
    (tmp_path / "Broken_test.txt").write_text("video_validation_1 1.0\n")
    with pytest.raises(AnnotationError, match=r"Broken_test.txt:1: expected 'VIDEO START END'"):
        read_thumos(tmp_path, "video_validation_1", fps=20, frames=100)


# --- metric arithmetic (hand-counted) ----------------------------------------------------------
def test_metrics_hand_counted():
    ann = annotation_from_dict(ABA)  # a[0,10) b[10,20) a[20,30), 10 fps, 3 s
    frames = [4, 8, 12, 16, 20, 24, 28]
    labels = ["a", "a", "a", "b", "b", "a", "b"]
    truth = ["a", "a", "b", "b", "a", "a", "a"]  # label of each newest frame
    # right at 4, 8, 16, 24 -> 4 of 7
    assert window_accuracy(frames, labels, ann) == (4, 7)
    # change a->b at 10: first b in [10,20) is frame 16 -> 6 frames; change b->a at 20: first a in [20,30) is 24 -> 4
    delays = switch_delays(frames, labels, ann)
    assert [(d.frame, d.to, d.delay_frames) for d in delays] == [(10, "b", 6), (20, "a", 4)]
    assert [d.delay_s for d in delays] == pytest.approx([0.6, 0.4])
    # decided changes at windows 16 (a->b, expected), 24 (b->a, expected), 28 (a->b, spurious)
    spurious, changes, per_min = flicker(frames, labels, ann)
    assert (spurious, changes) == (1, 3)
    assert per_min == pytest.approx(1 / (3 / 60))  # 1 spurious change in 3 s = 20 per minute
    s = summarize(score_stream(frames, labels, ann))
    assert truth == [ann.label_at(f) for f in frames]
    assert s["window_accuracy"] == pytest.approx(4 / 7)
    assert s["per_class_accuracy"]["a"] == {"accuracy": pytest.approx(3 / 5), "windows": 5}  # 4, 8, 24 of 4,8,20,24,28
    assert s["per_class_accuracy"]["b"] == {"accuracy": pytest.approx(1 / 2), "windows": 2}  # 16 of 12, 16
    assert s["switch_delay_frames"] == {"mean": 5.0, "p90": 6.0, "max": 6.0}
    assert s["missed_switches"] == 0 and s["flicker_per_min"] == pytest.approx(20.0)
    # settled (>= 0.5 s = 5 frames into the run; runs start at 0, 10, 20): windows 8 (a ok), 16 (b ok), 28 (b, wrong)
    assert settled_accuracy(frames, labels, ann, settle_s=0.5) == (2, 3)
    assert s["settled_accuracy"] is None  # default 1 s: no run here lasts 10 frames past its start


def test_metrics_missed_switch_and_steady_wrong_label():
    ann = annotation_from_dict(ABA)
    frames = [5, 15, 25]
    labels = ["a", "a", "a"]  # never says b: one missed switch; back to a at 20 is "reached" at 25 with no change
    s = summarize(score_stream(frames, labels, ann))
    assert s["switches"] == 2 and s["missed_switches"] == 1
    assert s["switch_delay_frames"] == {"mean": 5.0, "p90": 5.0, "max": 5.0}  # only the b->a change: 25 - 20
    assert s["decided_changes"] == 0 and s["spurious_changes"] == 0 and s["flicker_per_min"] == 0.0
    assert s["window_accuracy"] == pytest.approx(2 / 3)
    # a decision made before the annotated change does not count as the switch (it is spurious)
    frames, labels = [5, 8, 12, 15, 25], ["a", "b", "b", "b", "a"]
    spurious, changes, _ = flicker(frames, labels, ann)
    assert (spurious, changes) == (1, 2)  # a->b at 8 (before the change at 10), b->a at 25 expected
    assert [d.delay_frames for d in switch_delays(frames, labels, ann)] == [2, 5]  # b already shown at 12


def test_metrics_pooling_and_p90():
    assert p90(list(range(1, 11))) == 9  # ceil(0.9 * 10) = 9th smallest
    assert p90([3.0]) == 3.0
    assert p90(list(range(1, 21))) == 18
    ann = annotation_from_dict(ABA)
    one = score_stream([12, 24], ["b", "a"], ann)  # delays 2, 4; both right
    two = score_stream([15, 25], ["a", "b"], ann)  # both missed; both wrong
    pooled = summarize(merge_scores([one, two]))
    assert pooled["switches"] == 4 and pooled["missed_switches"] == 2
    assert pooled["switch_delay_frames"]["mean"] == 3.0 and pooled["window_accuracy"] == 0.5
    assert pooled["minutes"] == pytest.approx(0.1)


def test_metrics_reject_bad_sequences():
    ann = annotation_from_dict(ABA)
    with pytest.raises(ValueError, match="labels"):
        window_accuracy([1, 2], ["a"], ann)
    with pytest.raises(ValueError, match="non-decreasing"):
        switch_delays([5, 3], ["a", "b"], ann)


# --- decision policies ---------------------------------------------------------------------------
def _step(before: int, after: int, classes: int = 3) -> np.ndarray:
    """`before` windows sure of class 0, then `after` windows sure of class 1."""
    rows = np.zeros((before + after, classes))
    rows[:before, 0] = 1.0
    rows[before:, 1] = 1.0
    return rows


def _switch_window(decisions, start: int) -> int:
    """1-based number of the new-label window at which the decision switched to class 1."""
    return next(i for i, d in enumerate(decisions) if d.label == 1) - start + 1


def test_policy_none_follows_argmax():
    scores = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    ds = decide_all(scores, PolicySettings(kind="none"))
    assert [d.label for d in ds] == [1, 0, 0, 2]
    assert [(d.changed, d.previous) for d in ds] == [(True, None), (True, 1), (False, 0), (True, 0)]
    assert ds[3].score == pytest.approx(0.8)


@pytest.mark.parametrize("alpha, window", [(0.6, 1), (0.3, 2), (0.2, 4), (0.1, 7)])
def test_policy_ema_delay(alpha, window):
    # after n new windows the old class keeps (1-alpha)^n and the new one 1-(1-alpha)^n: the switch comes
    # at the first n with (1-alpha)^n < 0.5: 0.4; 0.49; 0.8^4=0.41 (0.8^3=0.51); 0.9^7=0.48 (0.9^6=0.53)
    ds = decide_all(_step(20, 20), PolicySettings(kind="ema", ema_alpha=alpha))
    assert _switch_window(ds, 20) == window
    assert ds[20 + window - 1].scores[0] == pytest.approx((1 - alpha) ** window)


@pytest.mark.parametrize("k, window", [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (8, 5), (9, 5)])
def test_policy_vote_delay(k, window):
    # the new label needs a strict majority of the last k (a tie keeps the current): floor(k/2)+1 windows
    ds = decide_all(_step(20, 20), PolicySettings(kind="vote", vote_k=k))
    assert _switch_window(ds, 20) == window == k // 2 + 1


def test_policy_vote_tie_keeps_current():
    a, b = [1.0, 0.0], [0.0, 1.0]
    ds = decide_all(np.array([a, b, a, b, a, b, a, b]), PolicySettings(kind="vote", vote_k=2))
    assert [d.label for d in ds] == [0] * 8  # every full window is a 1:1 tie
    assert sum(d.changed for d in ds) == 1  # only the initial decision


def test_policy_hysteresis_margin_and_hold():
    s = PolicySettings(kind="hysteresis", margin=0.2, hold=3)
    lead = lambda d: [0.5 - d / 2, 0.5 + d / 2]  # noqa: E731 - class 1 leads class 0 by d
    seq = [lead(-1.0)] + [lead(0.3)] * 2 + [lead(0.1)] + [lead(0.3)] * 3 + [lead(0.0)] * 2
    ds = decide_all(np.array(seq), s)
    # lead 0.3 twice, interrupted by 0.1 (< margin, streak resets), then 3 in a row: switch at window 7 (index 6)
    assert [d.label for d in ds] == [0, 0, 0, 0, 0, 0, 1, 1, 1]
    assert [i for i, d in enumerate(ds) if d.changed] == [0, 6]
    # exactly at the margin counts
    ds = decide_all(np.array([[1.0, 0.0], [0.4, 0.6], [0.4, 0.6]]), PolicySettings(kind="hysteresis", margin=0.2,
                                                                                   hold=2))
    assert [d.label for d in ds] == [0, 0, 1]


def test_policy_hysteresis_never_flickers_below_margin():
    rng = np.random.default_rng(0)
    margin = 0.15
    for _ in range(50):
        classes = int(rng.integers(2, 6))
        n = 60
        first = rng.dirichlet(np.ones(classes))
        current = int(np.argmax(first))
        rows = [first]
        for _ in range(n):
            x = rng.uniform(0.0, 1.0, classes)
            # every other class stays strictly below current + margin, however noisy
            x = np.minimum(x, x[current] + margin * rng.uniform(0.0, 0.99, classes))
            rows.append(x)
        ds = decide_all(np.array(rows), PolicySettings(kind="hysteresis", margin=margin, hold=1))
        assert all(d.label == current for d in ds)
        assert sum(d.changed for d in ds) == 1


@pytest.mark.parametrize("settings", [PolicySettings(kind="none"), PolicySettings(kind="ema", ema_alpha=0.4),
                                      PolicySettings(kind="vote", vote_k=4),
                                      PolicySettings(kind="hysteresis", margin=0.1, hold=2)])
def test_policy_exactly_one_change_flag_per_decided_change(settings):
    rng = np.random.default_rng(1)
    truth = np.repeat(rng.integers(0, 4, 30), 8)  # piecewise-constant class, noisy scores
    scores = rng.dirichlet(np.ones(4) * 0.7, len(truth)) * 0.6
    scores[np.arange(len(truth)), truth] += 0.4
    ds = decide_all(scores, settings)
    labels = [d.label for d in ds]
    transitions = [i for i in range(1, len(labels)) if labels[i] != labels[i - 1]]
    assert [i for i, d in enumerate(ds) if d.changed] == [0] + transitions
    assert all(d.previous == labels[i - 1] for i, d in enumerate(ds) if i > 0)
    assert len(transitions) > 3  # the sequence really exercises changes


def test_policy_reset_forgets_history_keeps_label():
    policy = make_policy(PolicySettings(kind="ema", ema_alpha=0.1))
    for _ in range(10):
        policy.update(np.array([1.0, 0.0]))
    assert policy.update(np.array([0.0, 1.0])).label == 0  # history dominates
    policy.reset()
    d = policy.update(np.array([0.0, 1.0]))  # decided from this window alone after a gap
    assert (d.label, d.changed, d.previous) == (1, True, 0)
    policy.reset()
    d = policy.update(np.array([0.2, 0.8]))
    assert (d.label, d.changed) == (1, False)  # a gap alone is not a change


@pytest.mark.parametrize("kwargs, key", [({"kind": "median"}, "kind"), ({"ema_alpha": 0.0}, "ema_alpha"),
                                         ({"ema_alpha": 1.5}, "ema_alpha"), ({"vote_k": 0}, "vote_k"),
                                         ({"margin": -0.1}, "margin"), ({"hold": 2.5}, "hold")])
def test_policy_settings_validation(kwargs, key):
    with pytest.raises(ConfigError, match=rf"\[policy\] {key} ="):
        make_policy(PolicySettings(**kwargs))


# --- development streams from real clips -----------------------------------------------------------
def test_make_sequences_weizmann4(shared_data, tmp_path, twostream_cmd, repo_root):
    data = shared_data / "weizmann4"
    out = tmp_path / "streams"
    proc = subprocess.run(twostream_cmd + ["make-sequences", str(data), str(out), "--groups", "actor2", "--seed", "3"],
                          cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    video = out / "weizmann4_actor2.mp4"
    ann = load_annotation(out / "weizmann4_actor2.json")
    assert count_frames(video) == ann.frames
    assert ann.segments[0].start == 0 and ann.segments[-1].end == ann.frames
    assert all(a.end == b.start for a, b in pairwise(ann.segments))  # contiguous
    assert sorted(s.label for s in ann.segments) == sorted(["bend", "jack", "wave1", "wave2"] * 2)  # 2 rounds
    assert all(a.label != b.label for a, b in pairwise(ann.segments))  # each boundary is a switch
    for seg in ann.segments:  # each segment is one whole clip of this actor and label
        assert seg.source == f"{seg.label}/actor2_{seg.label}.mp4"
        assert seg.length == count_frames(data / seg.source)

    from train.sequences import make_sequences
    [hand] = make_sequences(data, out, handheld=True, seed=3, groups=["actor2"], progress=False)
    hann = load_annotation(hand.annotation)
    assert hand.video.name == "weizmann4_actor2_handheld.mp4"
    assert hann.segments == ann.segments and count_frames(hand.video) == hann.frames
    clean_cap, hand_cap = cv2.VideoCapture(str(video)), cv2.VideoCapture(str(hand.video))
    diffs = []
    for _ in range(40):
        diffs.append(np.abs(clean_cap.read()[1].astype(int) - hand_cap.read()[1].astype(int)).mean())
    assert np.mean(diffs) > 8  # the simulated camera really moves/degrades the picture


def test_k400tiny2_groups_are_dealt(shared_data):
    from train.sequences import find_clips, group_clips
    groups = group_clips(find_clips(shared_data / "k400tiny2"))
    assert len(groups) == 28  # the smaller class (doing_exercises) has 28 clips
    assert all(sorted(c.label for c in cs) == ["doing_exercises", "typing"] for cs in groups.values())
    assert [c.path.name for c in groups["g01"]] == ["doing_exercises2.mp4", "typing2.mp4"]  # numeric order


# --- eval-stream end to end: real pipeline, real ZeroMQ, tiny real ONNX bundle ---------------------
def _independent_scores(frames, labels, ann):
    """Window accuracy, switch delays and spurious changes counted directly from the definitions."""
    truth = [ann.label_at(f) for f in frames]
    counted = [(label, t) for label, t in zip(labels, truth, strict=True) if t is not None]
    accuracy = sum(label == t for label, t in counted) / len(counted)
    segs = ann.segments
    delays, expected = [], set()
    for seg in segs[1:]:
        hit = next((i for i, f in enumerate(frames) if seg.start <= f < seg.end and labels[i] == seg.label), None)
        delays.append(None if hit is None else frames[hit] - seg.start)
        if hit is not None and hit > 0 and labels[hit - 1] != labels[hit]:
            expected.add(hit)
    changes = [i for i in range(1, len(labels)) if labels[i] != labels[i - 1]]
    return accuracy, delays, len([i for i in changes if i not in expected])


def _motion_probe_bundle(out, labels):
    """A real ONNX bundle whose label follows where the motion is: the temporal net scores the mean |flow| of 4
    horizontal bands (x300), the spatial net is constant. Random small nets give one label throughout; this one
    changes label often, so delays, flicker and change events are really exercised."""
    from torch import nn

    from stream.core.flow import FlowSettings
    from train.onnx_export import export_bundle

    class BandProbe(nn.Module):
        def __init__(self, gain):
            super().__init__()
            self.gain = gain
            self.pool = nn.AdaptiveAvgPool2d((len(labels), 1))

        def forward(self, x):
            return self.pool(x.abs()).mean(dim=1).flatten(1) * self.gain

    export_bundle(out, spatial=BandProbe(0.0).eval(), temporal=BandProbe(300.0).eval(), labels=labels,
                  input_size=32, flow_length=4, flow=FlowSettings(), arch="band_probe")
    return out


def test_eval_stream_end_to_end(shared_data, tmp_path, twostream_cmd, repo_root):
    from stream.core.toml_writer import write_toml
    from stream.quality.eval_stream import eval_config
    from train.sequences import make_sequences

    labels = ["bend", "jack", "wave1", "wave2"]
    bundle = _motion_probe_bundle(tmp_path / "bundle", labels)
    [seq] = make_sequences(shared_data / "weizmann4", tmp_path / "streams", rounds=1, groups=["actor2"],
                           progress=False)
    ann = load_annotation(seq.annotation)
    report_path, plot_path = tmp_path / "report.json", tmp_path / "timeline.png"
    proc = subprocess.run(twostream_cmd + ["eval-stream", str(seq.video), "--model", str(bundle), "--json",
                                           str(report_path), "--plot", str(plot_path), "--policies",
                                           "none,ema:0.5,hysteresis:0.05:2"],
                          cwd=repo_root, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(report_path.read_text())
    assert set(report) >= {"videos", "published", "policies", "recommended_policy", "windows", "labels"}
    assert list(report["policies"]) == ["none", "ema(alpha=0.5)", "hysteresis(margin=0.05, hold=2)"]
    windows = report["windows"][str(seq.video)]
    assert len(windows) == report["videos"][0]["windows"] > 20

    # The same video through `twostream run --print --json` independently: same windows, same labels.
    config = tmp_path / "run.toml"
    write_toml(config, eval_config(None, 4, None))
    run = subprocess.run(twostream_cmd + ["run", "--pace", "fast", "--model", str(bundle), "--config", str(config),
                                          "--publish", "ipc://" + str(tmp_path / "pub"), "--print", "--json", "-q",
                                          f"v={seq.video}"], cwd=repo_root, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    printed = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    predictions = [m for m in printed if m["event"] == "prediction"]
    assert [m["frame"] for m in predictions] == [w["frame"] for w in windows]
    for m, w in zip(predictions, windows, strict=True):  # same label unless the two best scores are a numerical tie
        scores = sorted(w["fused"].values())
        assert m["label"] == w["label"] or scores[-1] - scores[-2] < 1e-4

    frames = [w["frame"] for w in windows]
    published = [w["label"] for w in windows]
    assert sum(a != b for a, b in pairwise(published)) > 5  # the probe really changes its mind
    # exactly one change event per decided change (the first decision is a change from null), matching the labels
    changes = report["change_events"][str(seq.video)]
    switched = [i for i in range(len(published)) if i == 0 or published[i] != published[i - 1]]
    assert [(c["frame"], c["from"], c["to"]) for c in changes] == \
        [(frames[i], published[i - 1] if i else None, published[i]) for i in switched]
    accuracy, delays, spurious = _independent_scores(frames, published, ann)
    for name in ("published", ):
        got = report[name]
        assert got["window_accuracy"] == pytest.approx(accuracy)
        assert got["switches"] == len(delays) == 3
        assert got["missed_switches"] == sum(d is None for d in delays)
        hit = [d for d in delays if d is not None]
        assert got["switch_delay_frames"]["max"] == (max(hit) if hit else None)
        assert got["spurious_changes"] == spurious
        assert got["flicker_per_min"] == pytest.approx(spurious / (ann.frames / ann.fps / 60))
    assert report["policies"]["none"] == report["published"]  # runtime policy off: published = argmax

    # EMA replayed by hand from the published fused scores gives the reported EMA numbers.
    state, ema_labels = None, []
    for w in windows:
        x = np.array([w["fused"][label] for label in labels])
        state = x if state is None else 0.5 * x + 0.5 * state
        ema_labels.append(labels[int(np.argmax(state))])
    accuracy, delays, spurious = _independent_scores(frames, ema_labels, ann)
    assert report["policies"]["ema(alpha=0.5)"]["window_accuracy"] == pytest.approx(accuracy)
    assert report["policies"]["ema(alpha=0.5)"]["spurious_changes"] == spurious

    image = cv2.imread(str(plot_path))
    assert image is not None and image.shape[0] > 200 and image.shape[1] > 600
    colours = np.unique(image.reshape(-1, 3) // 32, axis=0)
    assert image.std() > 20 and len(colours) > 8  # bands in several label colours, not a blank canvas
