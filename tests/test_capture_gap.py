"""The gap a live source reports when it comes back (stats gap_seconds / gap_frames) runs from the last frame that
ever arrived, also when a reconnect in the middle of the outage opened the source but failed before its first frame.

The capture loop (stream.runtime.capture._capture_loop) runs in this process with a real shared-memory ring and
stats, a real doorbell pipe and real FFmpeg opens of rtsp://127.0.0.1:PORT, where, on one port:

1. the GStreamer RTSP test server (tests/rtsp_server.py) serves H.264: frames arrive;
2. it is killed and an RTSP server that answers OPTIONS/DESCRIBE/SETUP/PLAY with a valid SDP but never sends RTP
   takes its place: FFmpeg's open succeeds (after open_timeout), the first read gets nothing;
3. the GStreamer server comes back: frames arrive again and the loop reports the gap.
"""
from __future__ import annotations

import multiprocessing
import socket
import threading
import time

import pytest
from rtsp_fixtures import *  # noqa: F403

from stream.core.config import CaptureSettings
from stream.runtime.capture import CaptureJob, _capture_loop
from stream.runtime.shm import StatsBoard
from stream.runtime.sources import parse_source
from stream.runtime.stage import SharedFlag

# an SDP FFmpeg accepts: one H.264 track (baseline profile, with its SPS/PPS)
SDP = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=no rtp\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
       "a=fmtp:96 packetization-mode=1;profile-level-id=42c00c;"
       "sprop-parameter-sets=Z0LADNkFB+wEQAAAAwBAAAAMg8UKZYA=,aMuMsg==\r\n"
       "a=control:track1\r\n")


class NoRtpServer:
    """An RTSP server on 127.0.0.1:port that answers every request (PLAY included) and never sends RTP."""

    def __init__(self, port: int):
        self.listener = socket.create_server(("127.0.0.1", port))  # SO_REUSEADDR: the killed server's port
        self.listener.settimeout(0.1)
        self.methods: list[str] = []
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\r\n\r\n" in buf:
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, uri = lines[0].split()[:2]
                fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
                self.methods.append(method)
                reply = ["RTSP/1.0 200 OK", f"CSeq: {fields.get('cseq', '0')}", "Session: 12345678;timeout=60"]
                body = ""
                if method == "OPTIONS":
                    reply.append("Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN")
                elif method == "DESCRIBE":
                    body = SDP
                    reply += [f"Content-Base: {uri}/", "Content-Type: application/sdp", f"Content-Length: {len(SDP)}"]
                elif method == "SETUP":
                    transport = fields.get("transport", "")
                    reply.append(f"Transport: {transport}" + (";server_port=50000-50001"
                                                             if "client_port" in transport else ""))
                elif method == "PLAY":
                    reply.append("Range: npt=0.000-")
                try:
                    conn.sendall(("\r\n".join(reply) + "\r\n\r\n" + body).encode())
                except OSError:
                    return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.listener.close()
        for c in self._conns:
            c.close()


def _wait(predicate, timeout: float, what: str, stats: StatsBoard) -> float:
    """Poll predicate every 10 ms until it holds; its time.time(), or fail naming what did not happen."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}; stats {stats.row(0)}")
        time.sleep(0.01)
    return time.time()


def test_gap_runs_from_last_frame_across_a_reconnect_that_got_no_frame(rtsp_server, capture_parts):
    layout, ring, stats, bell = capture_parts
    server = rtsp_server()
    # stall 1.5 s, then a frameless session of ~open_timeout + ~read_timeout: the old clock restarted ~5 s late
    settings = CaptureSettings(open_timeout=2.5, read_timeout=1.5, stall_seconds=1.5, reconnect_initial=0.1,
                               reconnect_max=0.2)
    job = CaptureJob(spec=parse_source(f"cam={server.url}"), source=0, ring=layout, stats_name=stats.name,
                     stats_rows=1, flow_endpoint="", doorbell=bell.path, size=32, pace="realtime", max_frames=0,
                     capture=settings)
    stop = SharedFlag(multiprocessing.get_context("spawn"))
    result = {}
    loop = threading.Thread(target=lambda: result.update(out=_capture_loop(job, stop, ring, stats, bell,
                                                                            lambda: True)), daemon=True)

    def get(field: str) -> float:
        return stats.get(0, field)

    fake = None
    loop.start()
    try:
        # 1. frames arrive
        _wait(lambda: get("frames") >= 10, 30, "10 frames from the RTSP server", stats)
        reconnects = get("reconnects")
        # 2. the camera dies; on its port, a server that opens but never sends a frame
        server.stop()
        fake = NoRtpServer(server.port)
        _wait(lambda: stats.state(0) == "reconnecting", 15, "the stall to be detected", stats)
        frames, t_last = get("frames"), get("t_last_frame")
        _wait(lambda: get("reconnects") > reconnects, 15, "an open of the server that sends no RTP", stats)
        assert "PLAY" in fake.methods, fake.methods
        _wait(lambda: stats.state(0) == "live", 5, "the opened session to go live", stats)
        t_fail = _wait(lambda: stats.state(0) == "reconnecting", 15, "the frameless session to fail", stats)
        assert get("frames") == frames, "a frame arrived from the server that sends no RTP"
        assert get("t_last_frame") == t_last
        # 3. the camera comes back
        fake.close()
        fake = None
        t_up = time.time()  # before the restart: every open that can succeed returns after this
        server.start()
        t_seen = _wait(lambda: get("frames") > frames, 30, "frames after the restart", stats)
        gap_seconds, gap_frames = get("gap_seconds"), get("gap_frames")
        print(f"\nlast frame -> frameless session failed {t_fail - t_last:.2f} s -> restart {t_up - t_fail:.2f} s "
              f"-> frames again {t_seen - t_up:.2f} s; reported gap {gap_seconds:.2f} s, {gap_frames:g} frames")
        assert get("reconnects") >= reconnects + 2
        # the whole outage since the last frame of phase 1, not only since the frameless session failed
        assert t_up - t_last <= gap_seconds <= t_seen - t_last, (
            f"gap_seconds {gap_seconds:.2f} does not cover the outage since the last frame "
            f"({t_up - t_last:.2f}..{t_seen - t_last:.2f} s); since the frameless session failed: "
            f"{t_up - t_fail:.2f}..{t_seen - t_fail:.2f} s")
        assert gap_frames >= round(gap_seconds) > 0  # at some fps >= 1 (FFmpeg's guess for the RTSP stream)
    finally:
        stop.set()
        if fake is not None:
            fake.close()
        loop.join(15)
    assert not loop.is_alive() and result["out"][0] > frames
