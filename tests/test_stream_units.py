"""Unit tests: shared-memory rings, window arithmetic, fusion, flow scaling, sources, settings."""
from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
import pytest

from stream.core.config import Settings, load_settings, settings_from_dict
from stream.core.errors import ConfigError, SourceError
from stream.core.flow import FlowSettings, dequantize_flow, quantize_flow, stack_flows
from stream.core.fusion import fuse_scores, softmax, top_k
from stream.core.windows import WindowClock, window_count, window_end_frames
from stream.runtime.shm import RingLayout, ShmRing, SlotOverwritten
from stream.runtime.sources import mask_url, parse_source, parse_sources


# --- rings ---------------------------------------------------------------------------------------
def _ring(slots=4, shape=(2, 3)) -> ShmRing:
    return ShmRing(RingLayout(ShmRing.new_name("tstest"), slots, (("a", shape),)), create=True)


def test_ring_wraps_and_detects_overwrite():
    ring = _ring(slots=4)
    try:
        for i in range(10):
            ring.write(frame=100 + i, t_capture=float(i), epoch=i // 3, a=np.full((2, 3), i, np.uint8))
        assert ring.written == 10
        # the last 4 writes are readable with their own data and metadata
        for i in range(6, 10):
            assert ring.read(i, "a").tolist() == np.full((2, 3), i).tolist()
            frame, t_capture, _, epoch = ring.meta(i)
            assert (frame, t_capture, epoch) == (100 + i, float(i), i // 3)
        # older ones were overwritten by the wrap-around
        for i in range(0, 6):
            with pytest.raises(SlotOverwritten):
                ring.read(i, "a")
    finally:
        ring.close()
        ring.unlink()


def test_ring_back_pressure_counts_free_slots():
    ring = _ring(slots=3)
    try:
        for i in range(3):
            ring.write(frame=i, t_capture=0.0, a=np.zeros((2, 3), np.uint8))
        assert ring.free_slots() == 0
        ring.set_consumed(2)
        assert ring.free_slots() == 2
        assert ring.wait_for_space(poll=0.0)
    finally:
        ring.close()
        ring.unlink()


def _writer(layout: RingLayout, count: int) -> None:
    ring = ShmRing(layout, create=False)
    for i in range(count):
        # every byte of a slot holds the same value, so a torn copy shows as mixed values
        ring.write(frame=i, t_capture=time.time(), a=np.full(layout.fields[0][1], i % 251, np.uint8))
    ring.close()


def test_ring_concurrent_reader_never_sees_torn_slot():
    layout = RingLayout(ShmRing.new_name("tstest"), 8, (("a", (64, 64, 3)),))
    ring = ShmRing(layout, create=True)
    count = 20000
    proc = mp.get_context("spawn").Process(target=_writer, args=(layout, count))
    try:
        proc.start()
        good = overwritten = 0
        out = np.empty((64, 64, 3), np.uint8)
        deadline = time.time() + 60
        while (proc.is_alive() or good == 0) and time.time() < deadline:
            w = ring.written
            if w == 0:
                continue
            index = w - 1
            try:
                frame = ring.meta(index)[0]
                ring.read(index, "a", out=out)
            except SlotOverwritten:
                overwritten += 1
                continue
            assert out.min() == out.max() == index % 251, "reader returned a torn or wrong slot"
            assert frame == index
            good += 1
        proc.join(30)
        assert proc.exitcode == 0
        assert good > 0
    finally:
        ring.close()
        ring.unlink()


# --- windows -------------------------------------------------------------------------------------
@pytest.mark.parametrize("frames,L,stride", [(0, 10, 5), (10, 10, 5), (11, 10, 5), (16, 10, 5), (17, 10, 5),
                                             (103, 4, 5), (342, 10, 5), (100, 10, 1), (50, 3, 7)])
def test_window_count_matches_brute_force_definition(frames, L, stride):
    # Definition: windows end at frames f in [L, F-1] with (f - L) % stride == 0.
    expected = [f for f in range(frames) if f >= L and (f - L) % stride == 0]
    assert window_end_frames(frames, L, stride) == expected
    assert window_count(frames, L, stride) == len(expected)
    clock = WindowClock(L, stride)
    closed = [f for f in range(1, frames) if clock.add_flow()]  # flow f ends at frame f
    assert closed == expected


def test_window_clock_reset_never_spans_gap():
    clock = WindowClock(4, 2)
    assert [clock.add_flow() for _ in range(5)] == [False, False, False, True, False]
    clock.reset()
    # after a reset, a full L flows are needed again
    assert [clock.add_flow() for _ in range(4)] == [False, False, False, True]


def test_window_clock_phase_delays_every_window_by_that_many_frames():
    # span 4, stride 5, frames 0..16: phase 0 closes at frames 4, 9, 14; phase 2 at 6, 11, 16; phase 4 at 8, 13
    for phase, want in ((0, [4, 9, 14]), (2, [6, 11, 16]), (4, [8, 13])):
        clock = WindowClock(4, 5, phase=phase)
        assert [f for f in range(17) if clock.add_frame()] == want, phase
        clock.reset()  # after a gap the phase holds again
        assert [f for f in range(17) if clock.add_frame()] == want, phase
    with pytest.raises(ValueError, match="phase 5"):
        WindowClock(4, 5, phase=5)


def test_window_phases_spread_each_inference_process_sources_over_the_stride():
    from stream.runtime.flow_stage import window_phase

    # one process, stride 5: sources 0..6 -> phases 0 1 2 3 4 0 1
    assert [window_phase(i, live=True, processes=1, stride=5) for i in range(7)] == [0, 1, 2, 3, 4, 0, 1]
    # two processes: process 0 serves 0, 2, 4, 6 and process 1 serves 1, 3, 5, 7; each gets phases 0 1 2 3
    phases = [window_phase(i, live=True, processes=2, stride=5) for i in range(8)]
    assert phases[0::2] == [0, 1, 2, 3] and phases[1::2] == [0, 1, 2, 3]
    # files in fast pace (not live) keep the windows of a single source; stride 1 has nothing to spread
    assert window_phase(3, live=False, processes=1, stride=5) == 0
    assert window_phase(3, live=True, processes=1, stride=1) == 0


# --- fusion --------------------------------------------------------------------------------------
def test_fusion_weighted_average_of_softmaxes():
    s = np.array([[2.0, 0.0, 0.0]])
    t = np.array([[0.0, 0.0, 3.0]])
    ps, pt, fused = fuse_scores(s, t, spatial_weight=1.0, temporal_weight=1.5)
    e = np.exp([2.0, 0.0, 0.0])
    want_s = e / e.sum()
    e = np.exp([0.0, 0.0, 3.0])
    want_t = e / e.sum()
    np.testing.assert_allclose(ps[0], want_s)
    np.testing.assert_allclose(pt[0], want_t)
    np.testing.assert_allclose(fused[0], (1.0 * want_s + 1.5 * want_t) / 2.5)
    assert fused.sum() == pytest.approx(1.0)
    # temporal dominates with weight 1.5: label 2 wins although spatial says 0
    assert int(np.argmax(fused[0])) == 2


def test_softmax_is_stable_for_huge_logits():
    p = softmax(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(p[0], [0.5, 0.5, 0.0], atol=1e-12)


def test_top_k_order_and_ties():
    top = top_k(np.array([0.2, 0.4, 0.4]), ("a", "b", "c"), 2)
    assert [t["label"] for t in top] == ["b", "c"]


# --- flow scaling ------------------------------------------------------------------------------------
def test_flow_quantisation_clips_and_maps_linearly():
    flow = np.array([[[-30.0, -20.0], [0.0, 10.0], [20.0, 45.0]]], dtype=np.float32)
    q = quantize_flow(flow, bound=20.0)
    # (f + 20) * 255 / 40, clipped: -30 and -20 -> 0; 0 -> 127.5 -> 128 (round half to even); 10 -> 191.25 -> 191
    assert q.tolist() == [[[0, 0], [128, 191], [255, 255]]]
    x = dequantize_flow(q)
    assert x.min() == -1.0 and x.max() == 1.0
    assert dequantize_flow(np.array([191], np.uint8))[0] == pytest.approx((191 - 127.5) / 127.5)


def test_flow_stacking_orders():
    L, H, W = 3, 2, 2
    q = np.zeros((L, H, W, 2), np.uint8)
    for i in range(L):
        q[i, ..., 0] = 10 * i + 1  # x of flow i
        q[i, ..., 1] = 10 * i + 2  # y of flow i
    inter = stack_flows(q, "interleaved")[:, 0, 0]
    grouped = stack_flows(q, "grouped")[:, 0, 0]
    raw = lambda v: (np.array(v) - 127.5) / 127.5  # noqa: E731
    np.testing.assert_allclose(inter, raw([1, 2, 11, 12, 21, 22]), rtol=1e-6)
    np.testing.assert_allclose(grouped, raw([1, 11, 21, 2, 12, 22]), rtol=1e-6)


def test_flow_settings_reject_unknown_backend():
    from stream.core.errors import BundleError

    with pytest.raises(BundleError, match="backend"):
        FlowSettings(backend="raft").validate()


# --- sources -------------------------------------------------------------------------------------
def test_parse_sources_kinds_names_and_masking():
    specs = parse_sources(["0", "cam1=rtsp://bob:s3cret@10.1.2.3:554/live", "clips/a.mp4", "other/a.mp4"])
    assert [s.kind for s in specs] == ["webcam", "url", "file", "file"]
    assert [s.name for s in specs] == ["webcam0", "cam1", "a", "a-2"]
    assert "s3cret" not in specs[1].display and specs[1].display == "rtsp://bob:***@10.1.2.3:554/live"
    assert specs[1].target.endswith("/live") and "s3cret" in specs[1].target


def test_parse_source_errors():
    with pytest.raises(SourceError, match="unknown URL scheme 'ftp'"):
        parse_source("ftp://host/x.mp4")
    with pytest.raises(SourceError, match="used twice"):
        parse_sources(["a=x.mp4", "a=y.mp4"])
    with pytest.raises(SourceError, match="source name"):
        parse_source("bad name=x.mp4")


def test_mask_url_keeps_url_without_credentials():
    assert mask_url("rtsp://host/a") == "rtsp://host/a"
    assert mask_url("rtsp://user@host/a") == "rtsp://user:***@host/a"


# --- settings ------------------------------------------------------------------------------------
def test_config_toml_documents_every_setting_with_defaults(repo_root):
    import tomllib
    from dataclasses import fields

    doc = tomllib.loads((repo_root / "config.toml").read_text())
    for section in fields(Settings):
        keys = {f.name for f in fields(getattr(Settings(), section.name))}
        assert set(doc[section.name]) == keys, f"config.toml [{section.name}] must list every key"
    assert load_settings(repo_root / "config.toml") == Settings()
    # every key is explained: a comment block sits above each key or key group
    lines = (repo_root / "config.toml").read_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            j = i - 1
            while j >= 0 and "=" in lines[j] and not lines[j].startswith("#"):
                j -= 1
            assert j >= 0 and lines[j].startswith("#"), f"config.toml line {i + 1} ({line}) has no comment"


@pytest.mark.parametrize("doc,culprit", [
    ({"pipeline": {"strid": 5}}, "[pipeline] strid"),
    ({"pipeline": {"stride": 0}}, "[pipeline] stride = 0"),
    ({"pipeline": {"pace": "slow"}}, "[pipeline] pace = 'slow'"),
    ({"engine": {"threads": "two"}}, "[engine] threads = 'two'"),
    ({"nosuch": {}}, "[nosuch]"),
    ({"policy": {"kind": "magic"}}, "[policy] kind = 'magic'"),
])
def test_bad_settings_name_key_and_value(doc, culprit):
    with pytest.raises(ConfigError) as err:
        settings_from_dict(doc, where="test.toml")
    assert culprit in str(err.value) and "test.toml" in str(err.value)


def test_old_pipeline_flow_keys_still_read_with_a_warning_naming_the_new_key(caplog):
    doc = {"pipeline": {"flow_device": "cuda", "cuda_flow_backend": "nvof", "allow_other_flow": True, "stride": 7}}
    with caplog.at_level("WARNING", logger="twostream"):
        settings = settings_from_dict(doc, where="old.toml")
    assert (settings.flow.device, settings.flow.cuda_backend, settings.flow.allow_other) == ("cuda", "nvof", True)
    assert settings.pipeline.stride == 7
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["old.toml: [pipeline] flow_device is deprecated; use [flow] device",
                        "old.toml: [pipeline] cuda_flow_backend is deprecated; use [flow] cuda_backend",
                        "old.toml: [pipeline] allow_other_flow is deprecated; use [flow] allow_other"]
    assert doc["pipeline"]["flow_device"] == "cuda"  # the caller's document is left as it was
    with caplog.at_level("WARNING", logger="twostream"):
        caplog.clear()
        assert settings_from_dict({"flow": {"device": "cuda"}}).flow.device == "cuda"
    assert not caplog.records
    # a bad value under the old name is reported under the new one (the warning above it names both)
    with pytest.raises(ConfigError, match=r"^old.toml: \[flow\] device = 'gpu': expected one of cpu, cuda$"):
        settings_from_dict({"pipeline": {"flow_device": "gpu"}}, where="old.toml")
    with pytest.raises(ConfigError, match=r"\[pipeline\] flow_device and \[flow\] device are the same setting"):
        settings_from_dict({"pipeline": {"flow_device": "cpu"}, "flow": {"device": "cpu"}}, where="both.toml")


def test_config_file_messages_say_exactly_what_is_wrong(tmp_path):
    """Missing, a directory, not a regular file (/dev/null), unreadable, not UTF-8, not TOML: one exact line each."""
    from pathlib import Path

    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[pipeline\n")
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"# caf\xe9\n")
    cases = [(tmp_path / "nope.toml", "does not exist"),
             (tmp_path / "nope" / "x.toml", "does not exist"),
             (tmp_path, "is a directory, not a regular file"),
             (Path("/dev/null"), "is not a regular file"),
             (Path("/proc/self/mem"), "cannot be read (Input/output error)"),  # regular, but read() fails
             (latin, "is not valid TOML (not UTF-8 text: byte 5)"),
             (bad_toml, "is not valid TOML (Expected ']'")]
    for path, expect in cases:
        with pytest.raises(ConfigError) as err:
            load_settings(path)
        msg = str(err.value)
        assert msg.startswith(f"config file {str(path)!r} {expect}") and "\n" not in msg, msg


def test_url_password_from_environment_keeps_it_off_the_command_line(monkeypatch):
    monkeypatch.setenv("CAM1_PASSWORD", "p4ss")
    spec = parse_source("cam1=rtsp://admin:${CAM1_PASSWORD}@10.0.0.5:554/live")
    assert spec.target == "rtsp://admin:p4ss@10.0.0.5:554/live"
    assert spec.display == "rtsp://admin:***@10.0.0.5:554/live" and spec.name == "cam1"
    monkeypatch.delenv("CAM1_PASSWORD")
    with pytest.raises(SourceError, match="environment variable CAM1_PASSWORD is not set"):
        parse_source("rtsp://admin:${CAM1_PASSWORD}@10.0.0.5/live")
