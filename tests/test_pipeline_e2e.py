"""End to end: `twostream run` as a subprocess on real footage, output read over a real ZeroMQ socket."""
from __future__ import annotations

import subprocess
import sys
from itertools import pairwise

import pytest
from conftest import ROOT, count_frames, free_port, run_pipeline

from stream.clients.client import Change, EndOfStream, Prediction, Status

L, STRIDE = 4, 5  # the tiny bundle's flow length; the default stride


def expected_windows(frames: int, L: int, stride: int) -> int:
    # README definition: windows end at frames L, L+stride, ... <= F-1
    return len(range(L, frames, stride))


def predictions(messages, source=None):
    return [m for m in messages if isinstance(m, Prediction) and (source is None or m.source == source)]


def strip_times(p: Prediction) -> dict:
    raw = dict(p.raw)
    for key in ("t_capture", "t_publish", "latency_ms", "stages_ms", "batch"):
        raw.pop(key, None)
    return raw


def test_fast_run_publishes_exact_windows_schema_and_eos(shared_data, tiny_bundle):
    clip = shared_data / "replay" / "mmaction2_test.avi"
    frames = count_frames(clip)
    proc, messages = run_pipeline(["--model", str(tiny_bundle), "--pace", "fast", f"cam1={clip}"], expect_eos=1)
    assert proc.returncode == 0, proc.stderr
    preds = predictions(messages)
    want = expected_windows(frames, L, STRIDE)
    assert len(preds) == want > 0
    assert [p.seq for p in preds] == list(range(want))
    assert [p.frame for p in preds] == list(range(L, frames, STRIDE))
    for p in preds:
        assert p.source == "cam1"
        assert p.raw["schema"] == 1
        assert p.label in ("bend", "jack", "wave1", "wave2")
        assert 0.0 <= p.score <= 1.0 and len(p.top) == 3
        assert [t.score for t in p.top] == sorted((t.score for t in p.top), reverse=True)
        assert p.spatial.label in ("bend", "jack", "wave1", "wave2")
        assert p.t_capture <= p.t_publish and p.latency_ms >= 0
        assert set(p.stages_ms) == {"capture_to_flow", "queue", "inference", "publish"}
    eos = [m for m in messages if isinstance(m, EndOfStream)]
    assert len(eos) == 1 and eos[0].frames == frames and eos[0].windows == want and eos[0].dropped == 0
    assert not eos[0].error
    assert messages.index(eos[0]) > messages.index(preds[-1]), "EOS must follow the last prediction"
    # one change event per change of the decided label, consistent with the predictions
    changes = [m for m in messages if isinstance(m, Change)]
    labels = [p.label for p in preds]
    assert len(changes) == 1 + sum(a != b for a, b in pairwise(labels))
    assert any(isinstance(m, Status) for m in messages)


def test_two_fast_runs_are_identical(shared_data, tiny_bundle):
    clip = shared_data / "weizmann4" / "jack" / "actor1_jack.mp4"
    runs = []
    for _ in range(2):
        proc, messages = run_pipeline(["--model", str(tiny_bundle), "--pace", "fast", str(clip)], expect_eos=1)
        assert proc.returncode == 0, proc.stderr
        runs.append([strip_times(p) for p in predictions(messages)])
    assert len(runs[0]) == expected_windows(count_frames(clip), L, STRIDE)
    assert runs[0] == runs[1]


def test_three_sources_batched_with_exact_counts(shared_data, tiny_bundle):
    clips = {
        "a": shared_data / "weizmann4" / "bend" / "actor2_bend.mp4",
        "b": shared_data / "replay" / "mmaction2_test.avi",
        "c": shared_data / "weizmann4" / "wave2" / "actor4_wave2.mp4",
    }
    args = ["--model", str(tiny_bundle), "--pace", "fast"] + [f"{k}={v}" for k, v in clips.items()]
    proc, messages = run_pipeline(args, expect_eos=3)
    assert proc.returncode == 0, proc.stderr
    for name, clip in clips.items():
        frames = count_frames(clip)
        preds = predictions(messages, name)
        assert len(preds) == expected_windows(frames, L, STRIDE), name
        assert [p.seq for p in preds] == list(range(len(preds))), name
        eos = [m for m in messages if isinstance(m, EndOfStream) and m.source == name]
        assert len(eos) == 1 and eos[0].frames == frames and eos[0].windows == len(preds)
    # windows of different sources shared engine calls
    assert max(p.raw["batch"] for p in predictions(messages)) > 1


def test_max_batch_ms_caps_engine_calls(tmp_path, shared_data, tiny_bundle):
    """[pipeline] max_batch_ms: with a cap below one window's cost every engine call holds one window (the same
    three fast sources batch when uncapped, test above), and no window is lost."""
    capped = tmp_path / "capped.toml"
    capped.write_text("[pipeline]\nmax_batch_ms = 0.001\n")
    clips = {"a": shared_data / "weizmann4" / "bend" / "actor2_bend.mp4",
             "b": shared_data / "replay" / "mmaction2_test.avi",
             "c": shared_data / "weizmann4" / "wave2" / "actor4_wave2.mp4"}
    args = ["--model", str(tiny_bundle), "--pace", "fast", "--config", str(capped)] + [f"{k}={v}" for k, v in
                                                                                       clips.items()]
    proc, messages = run_pipeline(args, expect_eos=3)
    assert proc.returncode == 0, proc.stderr
    preds = predictions(messages)
    assert {p.raw["batch"] for p in preds} == {1}
    assert len(preds) == sum(expected_windows(count_frames(c), L, STRIDE) for c in clips.values())


def test_batch_limit_arithmetic():
    from stream.runtime.inference import batch_limit

    assert batch_limit(3.0, max_batch=16, max_batch_ms=40) == 13  # late int8: ~3 ms per window
    assert batch_limit(16.0, max_batch=16, max_batch_ms=40) == 2  # hidden: ~16 ms
    assert batch_limit(60.0, max_batch=16, max_batch_ms=40) == 1  # never below one window
    assert batch_limit(1.0, max_batch=16, max_batch_ms=40) == 16  # never above max_batch
    assert batch_limit(16.0, max_batch=16, max_batch_ms=0) == 16  # 0: off
    assert batch_limit(0.0, max_batch=8, max_batch_ms=40) == 8  # not timed (remote engine down): max_batch


def test_realtime_replay_follows_the_clock(shared_data, tiny_bundle):
    clip = shared_data / "weizmann4" / "wave1" / "actor0_wave1.mp4"  # 25 fps
    frames = count_frames(clip)
    proc, messages = run_pipeline(["--model", str(tiny_bundle), "--pace", "realtime", str(clip)], expect_eos=1)
    assert proc.returncode == 0, proc.stderr
    preds = predictions(messages)
    eos = [m for m in messages if isinstance(m, EndOfStream)][0]
    assert eos.frames == frames
    if eos.dropped == 0:  # nothing unaccounted: every window was published or counted as dropped
        assert len(preds) + eos.raw["windows_dropped"] == expected_windows(frames, L, STRIDE)
    span = preds[-1].t_capture - preds[0].t_capture
    # frames were captured at the file's pace (25 fps), not as fast as possible
    assert span == pytest.approx((preds[-1].frame - preds[0].frame) / 25.0, rel=0.25)


def test_print_flag_prints_one_line_per_prediction(shared_data, tiny_bundle):
    clip = shared_data / "weizmann4" / "bend" / "actor5_bend.mp4"
    proc = subprocess.run([sys.executable, "-m", "stream.cli", "run", "--model", str(tiny_bundle), "--pace", "fast",
                           "--print", "--publish", f"tcp://127.0.0.1:{free_port()}", str(clip)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    want = expected_windows(count_frames(clip), L, STRIDE)
    assert len([ln for ln in lines if "#" in ln and "frame" in ln]) == want
    assert "end of stream" in lines[-1]


BAD_INPUTS = [
    (["missing.mp4"], "missing.mp4: no such file"),
    (["ftp://host/x.mp4"], "unknown URL scheme 'ftp'"),
    (["57"], "webcam 57: no such device"),
    (["--publish", "tcp://127.0.0.1", "assets/demo.mp4"], "--publish 'tcp://127.0.0.1'"),
    (["--publish", "tcp://8.8.8.8:5555", "assets/demo.mp4"], "cannot bind"),
    (["--config", "{bad_config}", "assets/demo.mp4"], "[pipeline] strid"),
    (["--model", "no/such/dir", "assets/demo.mp4"], "'no/such/dir' is not a directory"),
    (["--stride", "0", "assets/demo.mp4"], "--stride: [pipeline] stride = 0"),
    (["{corrupt}"], "not a readable video"),
    (["--config", "{cuda_config}", "assets/demo.mp4"], "[flow] device = 'cuda'"),
]


def test_old_flow_key_warns_naming_the_new_key(tmp_path, tiny_bundle):
    """A config written before [flow] existed still works: one warning line naming the new key, then the
    setting takes effect (here: CUDA flow, refused on this bundle's DIS flow with the usual one-line error)."""
    old = tmp_path / "old.toml"
    old.write_text('[pipeline]\nflow_device = "cuda"\n')
    proc = subprocess.run([sys.executable, "-m", "stream.cli", "run", "--model", str(tiny_bundle), "--config", str(old),
                           "--publish", f"tcp://127.0.0.1:{free_port()}", "assets/demo.mp4"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"twostream: {old}: [pipeline] flow_device is deprecated; use [flow] device",
        "twostream run: error: [flow] device = 'cuda': the bundle's flow algorithm 'dis' has no CUDA version; keep "
        "device = 'cpu', or choose [flow] cuda_backend and set allow_other = true to accept another"]


@pytest.mark.parametrize("args,culprit", BAD_INPUTS)
def test_bad_input_one_line_error(args, culprit, tmp_path, tiny_bundle):
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[pipeline]\nstrid = 5\n")
    cuda_config = tmp_path / "cuda.toml"  # this machine has no CUDA; the bundle's flow is DIS
    cuda_config.write_text('[flow]\ndevice = "cuda"\n')
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(bytes(range(256)) * 64)
    args = [a.format(bad_config=bad_config, corrupt=corrupt, cuda_config=cuda_config) for a in args]
    if "--model" not in args:
        args = ["--model", str(tiny_bundle)] + args
    if "--publish" not in args:
        args += ["--publish", f"tcp://127.0.0.1:{free_port()}"]
    proc = subprocess.run([sys.executable, "-m", "stream.cli", "run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in err if "error" in ln]
    assert len(errors) == 1 and culprit in errors[0], proc.stderr
