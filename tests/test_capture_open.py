"""The capture loop (stream.runtime.capture._capture_loop, in this process, with real shared-memory ring and
stats, a real doorbell pipe and a real TCP peer on 127.0.0.1) when a live source's open does not return:
it must count a failed attempt within open_timeout + OPEN_MARGIN and keep retrying, not hang.

FFmpeg's own open timeout ended every local server behaviour tried (silent before OPTIONS, DESCRIBE, SETUP or
PLAY; PLAY answered and no RTP; HTTP headers then nothing) 10-25 ms after open_timeout, so no local server
can make cv2.VideoCapture() itself hang. What it cannot interrupt is a blocking call outside its timer
(getaddrinfo on a dead DNS server). That is stood in for here by a real blocking read, with no timeout, from a
server that never answers, made before the real open_capture(): the loop under test is unchanged.
"""
from __future__ import annotations

import multiprocessing
import socket
import threading
import time

import pytest

from stream.core.config import CaptureSettings
from stream.runtime import capture
from stream.runtime.capture import OPEN_MARGIN, CaptureJob, _capture_loop
from stream.runtime.sources import parse_source
from stream.runtime.stage import SharedFlag

OPEN_TIMEOUT = 1.0
HANG = 12.0  # how long each stood-in open blocks: far past open_timeout + OPEN_MARGIN


@pytest.fixture
def never_answers():
    """A TCP server on 127.0.0.1 that accepts connections and never sends a byte; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def accept():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()
    for c in held:
        c.close()


def test_open_that_never_returns_is_a_failed_attempt(monkeypatch, never_answers, capture_parts):
    layout, ring, stats, bell = capture_parts
    url = f"rtsp://127.0.0.1:{never_answers}/stream"
    opens = []
    real_open = capture.open_capture

    def blocking_open(spec, *, open_timeout, read_timeout):
        opens.append(time.monotonic())
        with socket.create_connection(("127.0.0.1", never_answers)) as s:
            s.settimeout(HANG)  # blocks like an uninterruptible getaddrinfo, then gives up
            try:
                s.recv(1)
            except TimeoutError:
                pass
        return real_open(spec, open_timeout=open_timeout, read_timeout=read_timeout)

    monkeypatch.setattr(capture, "open_capture", blocking_open)
    settings = CaptureSettings(open_timeout=OPEN_TIMEOUT, read_timeout=1.0, stall_seconds=1.0,
                               reconnect_initial=0.1, reconnect_max=0.2)
    job = CaptureJob(spec=parse_source(f"cam={url}"), source=0, ring=layout, stats_name=stats.name, stats_rows=1,
                     flow_endpoint="", doorbell=bell.path, size=32, pace="realtime", max_frames=0,
                     capture=settings)
    stop = SharedFlag(multiprocessing.get_context("spawn"))
    result = {}
    loop = threading.Thread(target=lambda: result.update(out=_capture_loop(job, stop, ring, stats, bell,
                                                                            lambda: True)), daemon=True)
    t0 = time.monotonic()
    loop.start()
    try:
        while stats.get(0, "attempts") < 1 and time.monotonic() - t0 < HANG:
            time.sleep(0.02)
        first_failure = time.monotonic() - t0
        print(f"\nfirst failed attempt reported {first_failure:.2f} s after the start "
              f"(open_timeout {OPEN_TIMEOUT:g} s + margin {OPEN_MARGIN:g} s)")
        assert stats.get(0, "attempts") >= 1, "the capture loop hung inside the open"
        assert first_failure <= OPEN_TIMEOUT + OPEN_MARGIN + 0.5
        assert stats.state(0) == "reconnecting" and stats.last_error(0) == "cannot open"
        # it keeps retrying while the abandoned open is still blocked, without stacking up blocked opens
        deadline = time.monotonic() + 3.0
        while stats.get(0, "attempts") < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stats.get(0, "attempts") >= 3
        assert len(opens) == 1, "a second open started while the first was still blocked"
        # once the abandoned open returns (and its capture is released), the next attempt opens again
        deadline = t0 + HANG + OPEN_TIMEOUT + 5.0
        while len(opens) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(opens) == 2, "no new open after the abandoned one returned"
    finally:
        stop.set()
        loop.join(HANG + 5)
    assert not loop.is_alive() and result["out"][0] == 0
