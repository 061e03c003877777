"""'none' decisions: min_score / min_margin / background class in the policy (pure), a bundle's [policy]
as the run's default policy (explicit config keys win), and change events to and from none."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream.core.config import load_settings, override, settings_from_dict
from stream.core.errors import BundleError, ConfigError
from stream.core.policy import NONE, PolicySettings, decide_all, make_policy

LABELS = ("bend", "jack", "wave1", "wave2")


def names(decisions, labels=LABELS):
    return [d.name(labels) for d in decisions]


def test_min_score_decides_none_below_threshold_and_changes_to_and_from_none():
    scores = np.array([
        [0.9, 0.05, 0.03, 0.02],  # bend, confident
        [0.5, 0.3, 0.1, 0.1],  # bend but below 0.6 -> none
        [0.6, 0.2, 0.1, 0.1],  # exactly at the threshold -> bend again
        [0.1, 0.1, 0.7, 0.1],  # wave1
    ])
    d = decide_all(scores, PolicySettings(kind="none", min_score=0.6))
    assert names(d) == ["bend", "none", "bend", "wave1"]
    assert [x.changed for x in d] == [True, True, True, True]
    assert d[1].label == NONE and d[1].previous_name(LABELS) == "bend"
    assert d[2].previous == NONE and d[2].previous_name(LABELS) == "none"
    # a none decision reports the score of the class that fell short
    assert d[1].score == pytest.approx(0.5)
    # none twice in a row is no change
    d2 = decide_all(np.array([[0.4, 0.3, 0.2, 0.1], [0.3, 0.4, 0.2, 0.1]]), PolicySettings(kind="none", min_score=0.5))
    assert names(d2) == ["none", "none"] and [x.changed for x in d2] == [True, False]
    assert d2[0].previous_name(LABELS) is None  # first decision of a stream: a change from null to none


def test_min_margin_needs_a_lead_over_the_runner_up():
    scores = np.array([[0.45, 0.40, 0.1, 0.05], [0.60, 0.30, 0.05, 0.05]])
    assert names(decide_all(scores, PolicySettings(kind="none", min_margin=0.1))) == ["none", "bend"]
    assert names(decide_all(scores, PolicySettings(kind="none"))) == ["bend", "bend"]


def test_threshold_applies_to_the_smoothed_scores_and_never_changes_the_smoothing():
    # ema 0.5: smoothed bend = 0.9, 0.55, 0.325 ; jack = 0.05, 0.4, 0.625
    scores = np.array([[0.9, 0.05, 0.03, 0.02], [0.2, 0.75, 0.03, 0.02], [0.1, 0.85, 0.03, 0.02]])
    plain = decide_all(scores, PolicySettings(kind="ema", ema_alpha=0.5))
    gated = decide_all(scores, PolicySettings(kind="ema", ema_alpha=0.5, min_score=0.6))
    assert names(plain) == ["bend", "bend", "jack"]
    assert names(gated) == ["bend", "none", "jack"]  # 0.55 < 0.6 (raw jack 0.75 does not count), 0.625 >= 0.6
    for a, b in zip(plain, gated, strict=True):
        np.testing.assert_allclose(a.scores, b.scores)


def test_vote_ties_follow_the_class_not_none():
    # vote 2 with min_score: the tie-break keeps the policy's own pick even while it is published as none
    s = PolicySettings(kind="vote", vote_k=2, min_score=0.7)
    rows = np.array([[0.8, 0.2, 0, 0], [0.2, 0.8, 0, 0], [0.3, 0.7, 0, 0]])
    d = decide_all(rows, s)
    ungated = decide_all(rows, PolicySettings(kind="vote", vote_k=2))
    assert [x.picked for x in d] == [x.label for x in ungated]
    # the mean score of the tied pair is 0.5 < 0.7: none while the vote is split
    assert names(d)[1] == "none"


def test_background_class_is_published_as_none():
    labels = LABELS + ("_background",)
    rows = np.array([[0.05, 0.05, 0.05, 0.05, 0.8], [0.7, 0.1, 0.1, 0.05, 0.05]])
    d = decide_all(rows, PolicySettings(kind="none"), labels)
    assert names(d, labels) == ["none", "bend"]
    assert d[0].picked == 4
    # without labels the policy cannot know the class: an ordinary label
    assert names(decide_all(rows, PolicySettings(kind="none")), labels) == ["_background", "bend"]
    # another background name works; a name that is not a label is an error naming the key
    other = ("bend", "idle")
    assert names(decide_all(rows[:, [0, 4]], PolicySettings(kind="none", background="idle"), other), other) \
        == ["none", "bend"]
    with pytest.raises(ConfigError, match=r"\[policy\] background = 'idel'"):
        make_policy(PolicySettings(background="idel"), LABELS)


def test_defaults_change_nothing():
    rng = np.random.default_rng(0)
    rows = rng.dirichlet(np.ones(4), size=50)
    for kind in ("none", "ema", "vote", "hysteresis"):
        d = decide_all(rows, PolicySettings(kind=kind), LABELS)
        assert NONE not in [x.label for x in d]


def test_policy_settings_reject_out_of_range_thresholds():
    with pytest.raises(ConfigError, match=r"\[policy\] min_score = 1.5"):
        settings_from_dict({"policy": {"min_score": 1.5}})
    with pytest.raises(ConfigError, match=r"\[policy\] min_margin"):
        settings_from_dict({"policy": {"min_margin": -1.5}})


def _bundle_with_policy(tmp_path, tiny_bundle, policy_lines: str):
    import shutil

    out = tmp_path / "b"
    shutil.copytree(tiny_bundle, out)
    toml = out / "bundle.toml"
    toml.write_text(toml.read_text() + "\n[policy]\n" + policy_lines + "\n")
    return out


def test_bundle_policy_is_read_and_checked(tmp_path, tiny_bundle):
    from engines.bundle import read_bundle

    assert read_bundle(tiny_bundle).policy == {}
    b = read_bundle(_bundle_with_policy(tmp_path, tiny_bundle, 'min_score = 0.6\nbackground = "_background"'))
    assert b.policy == {"min_score": 0.6, "background": "_background"}
    with pytest.raises(BundleError, match=r"unknown key \[policy\] min_scor"):
        read_bundle(_bundle_with_policy(tmp_path / "x", tiny_bundle, "min_scor = 0.6"))
    with pytest.raises(BundleError, match=r"\[policy\] min_score = 2"):
        read_bundle(_bundle_with_policy(tmp_path / "y", tiny_bundle, "min_score = 2"))
    with pytest.raises(BundleError, match=r"\[policy\] kind.*may set min_score"):
        read_bundle(_bundle_with_policy(tmp_path / "z", tiny_bundle, 'kind = "vote"'))


def test_bundle_policy_is_the_default_and_config_values_win(tmp_path):
    from stream.core.policy import resolve

    bundle_policy = {"min_score": 0.6, "background": "idle"}
    # the shipped config.toml (min_score = -1, background = "") takes the bundle's values
    shipped = load_settings(Path(__file__).resolve().parents[1] / "config.toml").policy
    r = resolve(shipped, bundle_policy)
    assert (r.min_score, r.min_margin, r.background) == (0.6, 0.0, "idle")
    # a bundle without [policy]: thresholds off, the default background class name
    r = resolve(PolicySettings(), {})
    assert (r.min_score, r.min_margin, r.background) == (0.0, 0.0, "_background")
    # a config value >= 0 wins, even 0 (threshold off on purpose)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[policy]\nmin_score = 0.0\nmin_margin = 0.1\n")
    r = resolve(load_settings(cfg).policy, bundle_policy)
    assert (r.min_score, r.min_margin, r.background) == (0.0, 0.1, "idle")
    # a flag-style override wins too
    r = resolve(override(load_settings(None), "policy", "min_score", 0.8, "--min-score").policy, bundle_policy)
    assert r.min_score == 0.8


# --- streaming metrics with "none" (hand-counted) --------------------------------------------------
def _ann(segments, frames=100, fps=10.0):
    from stream.quality.annotations import annotation_from_dict

    return annotation_from_dict({"fps": fps, "frames": frames,
                                 "segments": [{"label": lab, "start": a, "end": b} for lab, a, b in segments]})


def test_metrics_count_none_as_a_miss_on_actions_and_correct_on_background():
    from stream.quality.metrics import score_stream, summarize

    # frames 0-39 bend, 40-69 annotated background, 70-99 unannotated (background too)
    ann = _ann([("bend", 0, 40), ("_background", 40, 70)])
    frames = [10, 20, 30, 45, 50, 55, 60, 75, 80, 85, 90]
    labels = ["bend", "none", "bend", "jack", "jack", "none", "wave1", "wave1", "none", "_background", "bend"]
    s = summarize(score_stream(frames, labels, ann))
    # action windows: frames 10, 20, 30 -> bend, none (miss), bend: 2/3
    assert s["windows"] == 3 and s["window_accuracy"] == pytest.approx(2 / 3)
    # background windows: 45..90 = 8, of them none: 55, 80, 85 (_background counts as none) = 3
    assert s["background_windows"] == 8 and s["background_none_rate"] == pytest.approx(3 / 8)
    # false alarms = changes into an action over background: jack@45, wave1@60, bend@90 (wave1@75 continues) = 3
    assert s["false_alarms"] == 3
    # 60 background frames at 10 fps = 6 s = 0.1 min -> 30 per minute
    assert s["background_minutes"] == pytest.approx(0.1)
    assert s["false_alarms_per_min"] == pytest.approx(30.0)
    # the change bend -> background at frame 40 is a switch to none, reached at frame 55 (delay 15 frames)
    assert [(sw.to, sw.delay_frames) for sw in score_stream(frames, labels, ann).switches] == [("_background", 15)]


def test_false_alarms_per_minute_on_other_activity_footage():
    from stream.quality.metrics import false_alarms_per_minute

    # none, bend (alarm), bend, none, bend (alarm), jack (alarm), _background = none
    labels = ["none", "bend", "bend", "none", "bend", "jack", "_background"]
    assert false_alarms_per_minute(labels, 0.5) == pytest.approx(6.0)
    assert false_alarms_per_minute(["none"] * 5, 1.0) == 0.0


def test_eval_stream_policies_take_the_bundle_threshold_unless_they_set_one():
    from stream.quality.eval_stream import parse_policy

    p = parse_policy("ema:0.5:min_score=0.6")
    assert (p.kind, p.ema_alpha, p.min_score, p.min_margin) == ("ema", 0.5, 0.6, -1.0)
    assert parse_policy("none:min_score=0").min_score == 0.0
    assert parse_policy("ema:0.5").min_score == -1.0  # -> the bundle's when scored
    with pytest.raises(ConfigError, match="min_scor"):
        parse_policy("ema:0.5:min_scor=0.6")
