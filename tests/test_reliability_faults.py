"""Reliability under process faults, broken files, slow subscribers and signals, with real `twostream run`
processes, real ZeroMQ sockets and real (ffmpeg-made) H.264 files.

Numbers measured here are printed (pytest -s) and quoted in README.md (Failure behaviour).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from rtsp_fixtures import *  # noqa: F403
from rtsp_fixtures import ROOT, Collector, PipelineRun, running, shm_segments, write_config

from stream.clients.client import EndOfStream, Prediction, Status


def _config(tmp_path, **pipeline):
    return write_config(tmp_path / "cfg.toml", publish={"status_interval": 0.2},
                        pipeline={"stop_timeout": 5.0, **pipeline})


def _wait_preds(collector: Collector, source: str, after_seq: int, n: int, timeout: float) -> float | None:
    return collector.wait_for(lambda m: isinstance(m, Prediction) and m.source == source and m.seq >= after_seq + n,
                              timeout)


@pytest.mark.parametrize("stage", ["ts-flow", "ts-inference"])
def test_kill_9_stage_is_restarted(tmp_path, h264_clip, tiny_bundle, stage):
    with running(tmp_path, [f"a={h264_clip}", f"b={h264_clip}"], bundle=tiny_bundle,
                 config=_config(tmp_path)) as (run, collector):
        for source in ("a", "b"):
            assert _wait_preds(collector, source, 0, 5, 30), run.stderr
        ours = run.shm_names()
        assert len(ours) == 5  # 2 frame rings, 2 flow rings, the stats board
        pid = run.children()[stage]
        seq = {s: collector.of(Prediction, s)[-1].seq for s in ("a", "b")}
        t_kill = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        back = {}
        for source in ("a", "b"):
            t = _wait_preds(collector, source, seq[source], 3, 20)
            assert t is not None, f"{source}: no predictions after {stage} was killed\n{run.stderr}"
            back[source] = t - t_kill
        new_pid = run.children().get(stage)
        assert new_pid is not None and new_pid != pid
        print(f"\nkill -9 {stage}: predictions of a/b resumed after {back['a']:.2f} / {back['b']:.2f} s")
        assert run.proc.poll() is None
        assert "restarting (1/" in run.stderr
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait(15) == 0, run.stderr
        time.sleep(0.3)
        for source in ("a", "b"):
            seqs = [m.seq for m in collector.of(Prediction, source)]
            assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs)
            assert len(collector.of(EndOfStream, source)) == 1
    assert not ours & shm_segments(), "shared memory leaked"


def test_kill_9_of_a_file_capture_ends_that_source_with_error(tmp_path, h264_clip, tiny_bundle):
    """A file is not replayed from its start after its capture dies: that source ends (EOS with error), the
    other carries on to its normal end, and the exit status says a source failed."""
    with running(tmp_path, [f"a={h264_clip}", f"b={h264_clip}"], bundle=tiny_bundle,
                 config=_config(tmp_path)) as (run, collector):
        for source in ("a", "b"):
            assert _wait_preds(collector, source, 0, 3, 30), run.stderr
        os.kill(run.children()["ts-capture:0"], signal.SIGKILL)
        code = run.wait(90)
        time.sleep(0.3)
    assert code == 1, run.stderr
    eos = {m.source: m for m in collector.of(EndOfStream)}
    assert set(eos) == {"a", "b"}
    assert "capture process died" in eos["a"].error and str(h264_clip) in eos["a"].error
    assert eos["a"].windows == len(collector.of(Prediction, "a")) > 0
    assert not eos["b"].error and eos["b"].frames > eos["a"].frames
    seqs = [m.seq for m in collector.of(Prediction, "a")]
    assert seqs == list(range(len(seqs))), "the killed source's predictions were not replayed or duplicated"
    assert "twostream run: source a:" in run.stderr and "Traceback" not in run.stderr


def test_kill_9_supervisor_leaves_no_shared_memory(tmp_path, h264_clip, tiny_bundle):
    """Even the supervisor dying hard must not leak /dev/shm: stages exit, the resource tracker unlinks."""
    with running(tmp_path, [f"a={h264_clip}"], bundle=tiny_bundle, config=_config(tmp_path)) as (run, collector):
        assert _wait_preds(collector, "a", 0, 3, 30), run.stderr
        stages = run.children()
        ours = run.shm_names()
        assert len(ours) == 3 and ours <= shm_segments()
        os.kill(run.proc.pid, signal.SIGKILL)
        run.wait(5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (ours & shm_segments() or
                                               any(os.path.exists(f"/proc/{p}") for p in stages.values())):
            time.sleep(0.1)
        assert not any(os.path.exists(f"/proc/{p}") for p in stages.values()), "stage outlived the supervisor"
        assert not ours & shm_segments(), "shared memory leaked after kill -9 of the supervisor"


def _broken_copies(clip, tmp_path):
    data = clip.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])  # like `head -c`: the moov atom is first (faststart)
    corrupt = tmp_path / "corrupt.mp4"
    noise = np.random.default_rng(0).integers(0, 256, len(data) - len(data) // 2, dtype=np.uint8).tobytes()
    corrupt.write_bytes(data[: len(data) // 2] + noise)
    return truncated, corrupt


def test_truncated_and_corrupt_files_end_with_error(tmp_path, h264_clip, tiny_bundle):
    truncated, corrupt = _broken_copies(h264_clip, tmp_path)
    random_bytes = tmp_path / "random.mp4"
    random_bytes.write_bytes(np.random.default_rng(2).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with running(tmp_path, [f"good={h264_clip}", f"cut={truncated}", f"noise={corrupt}", f"junk={random_bytes}"],
                 bundle=tiny_bundle, config=_config(tmp_path),
                 extra=["--pace", "fast", "--stride", "10"]) as (run, collector):
        code = run.wait(120)
        time.sleep(0.3)
    assert code == 1, run.stderr
    eos = {m.source: m for m in collector.of(EndOfStream)}
    assert set(eos) == {"good", "cut", "noise", "junk"}
    total = int(subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-show_entries", "stream=nb_read_packets",
                                "-of", "csv=p=0", str(h264_clip)], capture_output=True, text=True).stdout.strip())
    assert eos["good"].error == "" and eos["good"].frames == total
    for name, path in (("cut", truncated), ("noise", corrupt)):
        e = eos[name]
        assert str(path) in e.error and "truncated or corrupt" in e.error, e.error
        assert 0 < e.frames < total  # what could be decoded was processed and published
        assert e.windows > 0 and len(collector.of(Prediction, name)) > 0
        assert f"twostream run: source {name}: {path}" in run.stderr
    # a file of random bytes in a run with usable sources ends only its own source, with the reason
    junk = eos["junk"]
    assert junk.frames == 0 and junk.windows == 0 and str(random_bytes) in junk.error, junk.error
    assert not collector.of(Prediction, "junk")
    assert f"twostream run: source junk: {random_bytes}" in run.stderr
    assert "Traceback" not in run.stderr


def test_sigterm_drains_and_exits_within_bound(tmp_path, h264_clip, tiny_bundle):
    with running(tmp_path, [f"a={h264_clip}", f"b={h264_clip}"], bundle=tiny_bundle,
                 config=_config(tmp_path)) as (run, collector):
        for source in ("a", "b"):
            assert _wait_preds(collector, source, 0, 3, 30), run.stderr
        ours = run.shm_names()
        assert len(ours) == 5
        t0 = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        code = run.wait(20)
        took = time.monotonic() - t0
        time.sleep(0.3)
    print(f"\nSIGTERM: exited with {code} after {took:.2f} s")
    assert code == 0 and took < 5.0 + 2.0  # stop_timeout + process teardown
    for source in ("a", "b"):
        eos = collector.of(EndOfStream, source)
        assert len(eos) == 1 and not eos[0].error
        preds = collector.of(Prediction, source)
        assert eos[0].windows >= len(preds)  # nothing published after the EOS claimed otherwise
        statuses = collector.of(Status, source)
        assert statuses[-1].state == "ended"
    assert "Traceback" not in run.stderr
    assert not ours & shm_segments()


def _rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_stalled_subscriber_memory_bounded_and_loss_reported(tmp_path, h264_clip, tiny_bundle):
    """A subscriber that stops reading (SIGSTOP) must not grow the publisher nor slow the pipeline;
    when it resumes, `twostream subscribe` reports the predictions it lost from seq gaps.

    ipc:// keeps the kernel's share small (a unix socket buffers ~200 KB, loopback TCP up to ~10 MB),
    so a few seconds of stop overflow SNDHWM; the memory bound is the same for tcp://.
    """
    sndhwm = 200
    config = write_config(tmp_path / "cfg.toml", publish={"status_interval": 0.5, "sndhwm": sndhwm},
                          pipeline={"stop_timeout": 5.0})
    endpoint = f"ipc://{tmp_path}/pub.sock"
    sub_out = open(tmp_path / "sub.out", "w")
    sub_err = open(tmp_path / "sub.err", "w")
    subscriber = subprocess.Popen([sys.executable, "-m", "stream.cli", "subscribe", "--connect", endpoint,
                                   "--until-eos", "--json", "--timeout", "60"], cwd=ROOT, stdout=sub_out,
                                  stderr=sub_err)
    # 4 sources at stride 1 in realtime: 100 predictions/s of ~0.8 KB
    run = PipelineRun(tmp_path, [f"s{i}={h264_clip}" for i in range(4)], bundle=tiny_bundle, config=config,
                      extra=["--stride", "1", "--print", "--json", "--max-frames", "400"], endpoint=endpoint)
    try:
        time.sleep(3)  # everyone connected, steady state
        rss_start = _rss_kb(run.proc.pid)
        os.kill(subscriber.pid, signal.SIGSTOP)
        samples = []
        for _ in range(8):
            time.sleep(1)
            samples.append(_rss_kb(run.proc.pid))
        os.kill(subscriber.pid, signal.SIGCONT)
        code = run.wait(60)
        sub_code = subscriber.wait(30)
    finally:
        if subscriber.poll() is None:
            os.kill(subscriber.pid, signal.SIGCONT)
            subscriber.kill()
            subscriber.wait()
        sub_out.close()
        sub_err.close()
        run.close()
    print(f"\nslow subscriber: supervisor RSS {rss_start} kB at start, {samples} kB while stopped")
    assert code == 0, run.stderr
    assert sub_code == 0
    assert max(samples) - rss_start < 10_000, f"publisher grew by {max(samples) - rss_start} kB"
    # real time kept: every window of every source was published (run's own --print output)
    printed = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    eos = [m for m in printed if m["event"] == "eos"]
    assert len(eos) == 4 and all(not e.get("error") for e in eos)
    lat = sorted(m["latency_ms"] for m in printed if m["event"] == "prediction")
    print(f"latency while the subscriber was stopped: median {lat[len(lat) // 2]:.0f} ms, "
          f"p95 {lat[int(0.95 * len(lat))]:.0f} ms, windows_dropped {[e['windows_dropped'] for e in eos]}")
    assert lat[int(0.95 * len(lat))] < 1000
    err = (tmp_path / "sub.err").read_text()
    lost = {line.split(": ")[1]: int(line.split(": ")[2].split()[0])
            for line in err.splitlines() if "prediction(s) lost (seq gaps)" in line}
    received = [json.loads(line) for line in (tmp_path / "sub.out").read_text().splitlines()]
    got = {}
    for m in received:
        if m.get("event") == "prediction":
            got.setdefault(m["source"], []).append(m["seq"])
    print(f"subscriber: received {sum(map(len, got.values()))}, reported lost {lost}")
    assert lost, f"twostream subscribe did not report the loss: {err!r}"
    for source, seqs in got.items():
        # what it reports lost is exactly the holes in what it received
        assert lost.get(source, 0) == seqs[-1] - seqs[0] + 1 - len(seqs)


def test_publisher_memory_bounded_by_sndhwm(tmp_path):
    """The real Publisher on a real socket, flooded while a connected subscriber reads nothing:
    RSS growth stays near SNDHWM x message size, far below what queueing everything would take."""
    import zmq

    from stream.core.config import PublishSettings
    from stream.core.policy import PolicySettings
    from stream.runtime.decider import Decider
    from stream.runtime.events import WindowResult
    from stream.runtime.publisher import Publisher

    endpoint = f"ipc://{tmp_path}/flood.sock"
    ctx = zmq.Context()
    labels = tuple(f"label_{i}" for i in range(10))
    publisher = Publisher(PublishSettings(endpoint=endpoint, sndhwm=100), ctx=ctx)
    decider = Decider(["cam"], labels=labels, policy=PolicySettings(), top=3, flow_length=4)

    def publish_prediction(r):
        return [publisher.send(m) for m in decider.decide(r)]
    sink = ctx.socket(zmq.SUB)
    sink.setsockopt(zmq.SUBSCRIBE, b"twostream/")
    sink.setsockopt(zmq.RCVHWM, 100)
    sink.connect(endpoint)
    time.sleep(0.3)
    probs = list(np.full(10, 0.1))
    result = WindowResult(source=0, frame=0, t_capture=time.time(), t_flow=time.time(), t_infer_start=time.time(),
                          t_infer_end=time.time(), spatial=probs, temporal=probs, fused=probs, batch=1)
    n = 30_000
    size = len(json.dumps(publish_prediction(result)))
    rss0 = _rss_kb(os.getpid())
    t0 = time.monotonic()
    for _ in range(n):
        publish_prediction(result)
    took = time.monotonic() - t0
    grown = _rss_kb(os.getpid()) - rss0
    sink.close(0)
    publisher.close()
    ctx.term()
    unbounded_kb = n * size // 1024
    print(f"\nflood: {n} messages of {size} B in {took:.1f} s ({n / took:.0f}/s), RSS +{grown} kB "
          f"(queueing all would be ~{unbounded_kb} kB)")
    assert grown < unbounded_kb / 5
    assert decider.published[0] == n + 1  # never blocked, every seq consumed
