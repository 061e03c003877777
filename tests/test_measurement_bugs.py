"""Issue 12's correctness bugs behind the numbers, each with a test that failed before its fix:

- a replayed file in realtime pace is stamped with its schedule, so a capture that falls behind shows the lag
  in the published latency (before: stamped after decode, the lag was invisible);
- the flow stage restarts its chain after skipped frames, so no window holds a flow spanning several frames
  (before: the flow across the skip entered the next windows).
"""
from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
from rtsp_fixtures import Collector, PipelineRun

from stream.clients.client import EndOfStream, Prediction


def test_a_capture_that_falls_behind_its_schedule_shows_the_lag(tmp_path, shared_data, tiny_bundle):
    """Freeze the capture process for 2 s in the middle of a 25 fps realtime replay: the frames it reads
    after resuming were due up to 2 s earlier, and the published stamps and latency must say so.

    Deterministic part: every prediction's t_capture is the schedule, first frame's time + frame / 25, before
    and after the freeze (stamped after decoding, the bug, frames read after the freeze jumped 2 s late).
    Timing part: the inference stage keeps only the newest of the windows queued for a live source, and how
    many of the overdue windows are queued together when it looks depends on the machine's load (CI under
    load published the overdue windows with 322 and 481 ms of lag, an idle machine with ~1.5 s), so the lag is
    asserted as > 250 ms: stamped after decoding, those windows showed ~10 ms.
    live_queue is raised so the flow stage processes every late frame instead of dropping them."""
    clip = shared_data / "replay" / "mmaction2_test.avi"  # 164 frames, 25 fps: 6.5 s
    config = tmp_path / "queue.toml"
    config.write_text("[pipeline]\nlive_queue = 1000\n")
    run = PipelineRun(tmp_path, [f"cam={clip}"], bundle=tiny_bundle, config=config,
                      extra=["--pace", "realtime", "--stride", "2"])
    collector = Collector(run.endpoint)
    try:
        assert collector.wait_for(lambda m: isinstance(m, Prediction), 60) is not None, run.stderr
        capture = run.children().get("ts-capture:0")
        assert capture, run.children()
        os.kill(capture, signal.SIGSTOP)
        frozen_at = max(p.frame for p in collector.of(Prediction))
        time.sleep(2.0)
        os.kill(capture, signal.SIGCONT)
        assert collector.wait_for(lambda m: isinstance(m, EndOfStream), 60) is not None, run.stderr
        assert run.wait(30) == 0, run.stderr
    finally:
        collector.close()
        run.close()
    predictions = collector.of(Prediction)
    assert collector.of(EndOfStream)[0].frames == 164
    assert frozen_at < 120, f"the freeze came too late in the clip to be seen (frame {frozen_at})"
    # the schedule: frame k is stamped t0 + k / 25 whenever it was actually read
    offsets = [p.t_capture - p.frame / 25.0 for p in predictions]
    assert max(offsets) - min(offsets) < 0.002, [(p.frame, round(o - offsets[0], 3)) for p, o in
                                                  zip(predictions, offsets, strict=True)]
    assert any(p.frame > frozen_at + 50 for p in predictions), [p.frame for p in predictions]
    latencies = [p.latency_ms for p in predictions]
    # the windows read right after the freeze were overdue, and the published latency says so
    assert max(latencies) > 250.0, sorted(latencies)[-5:]
    # and the lag is worked off: the last windows are on schedule again
    assert min(latencies[-5:]) < 500.0, latencies[-5:]


class _Collect:
    """Stands in for the flow stage's PUSH socket: keeps what would be sent."""

    def __init__(self):
        self.sent = []

    def send_pyobj(self, obj, flags=0):
        self.sent.append(obj)


def test_flow_chain_restarts_after_skipped_frames():
    """A live source whose frames pile up beyond live_queue: the skipped frames must not leave a flow that
    spans them inside any window. Windows worked out by hand: L = 3, stride 1, live_queue 3."""
    from stream.core.config import PipelineSettings
    from stream.core.flow import FlowSettings
    from stream.runtime.events import WindowReady
    from stream.runtime.flow_stage import FlowJob, _advance, _SourceFlow
    from stream.runtime.shm import RingLayout, ShmRing, StatsBoard

    s = 32
    frame_layout = RingLayout(ShmRing.new_name("tstestframe"), 16, (("frame_rgb", (s, s, 3)),))
    flow_layout = RingLayout(ShmRing.new_name("tstestflow"), 64, (("flow", (s, s, 2)), ("frame_rgb", (s, s, 3))))
    frames_ring = ShmRing(frame_layout, create=True)
    flows_ring = ShmRing(flow_layout, create=True)
    stats = StatsBoard(ShmRing.new_name("tsteststat"), 1, create=True)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (s + 40, s + 40, 3), dtype=np.uint8)
    try:
        job = FlowJob(frame_rings=(frame_layout,), flow_rings=(flow_layout,), live=(True,), stats_name=stats.name,
                      flow_settings=FlowSettings(), flow_length=3,
                      pipeline=PipelineSettings(stride=1, live_queue=3), in_endpoint="", out_endpoints=("",))
        src = _SourceFlow(0, job)
        push, stop = _Collect(), threading.Event()

        def write(first: int, last: int) -> None:
            for k in range(first, last + 1):  # a texture moving 1 px per frame: real flow
                frames_ring.write(frame=k, t_capture=time.time(), epoch=0, frame_rgb=texture[k % 40:k % 40 + s, :s])

        write(0, 4)  # 5 waiting > live_queue 3: frames 0, 1 skipped; 2 starts the chain; flows 3, 4
        _advance(src, job, stats, push, stop)
        write(5, 6)  # flows 5, 6: windows at frames 5 and 6
        _advance(src, job, stats, push, stop)
        write(7, 14)  # 8 waiting: 7..11 skipped; 12 restarts the chain; flows 13, 14: no window yet
        _advance(src, job, stats, push, stop)
        write(15, 15)  # third flow of the new chain: a window at 15
        _advance(src, job, stats, push, stop)
        windows = [m for m in push.sent if isinstance(m, WindowReady)]
        assert [w.frame for w in windows] == [5, 6, 15]
        for w in windows:  # the L flows of every window come from consecutive frames
            numbers = [flows_ring.meta(i)[0] for i in range(w.end_index - 2, w.end_index + 1)]
            assert numbers == list(range(w.frame - 2, w.frame + 1)), numbers
        assert stats.get(0, "dropped") == 2 + 5
    finally:
        src.frames.close()
        src.flows.close()
        for ring in (frames_ring, flows_ring):
            ring.close()
            ring.unlink()
        stats.close()
        stats.unlink()


def test_camera_motion_median_equals_numpy_median():
    """The faster median (one partition per component) must give np.median's centre exactly: the shipped
    temporal network was trained on flow with np.median's centre subtracted."""
    from stream.core.flow import subtract_camera_motion

    rng = np.random.default_rng(1)
    for shape in [(112, 112, 2), (7, 9, 2), (1, 1, 2), (3, 4, 2)]:
        for i in range(40):
            flow = (rng.normal(size=shape) * 5).astype(np.float32)
            if i % 3 == 0:
                flow = np.round(flow)  # ties between the two middle values
            centre = np.median(flow.reshape(-1, 2), axis=0)
            np.testing.assert_array_equal(subtract_camera_motion(flow, "median"), flow - centre.astype(np.float32))
