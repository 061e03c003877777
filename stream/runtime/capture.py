"""Capture stage: one process per source. Decodes, resizes to the model size, writes the frame ring.

Files replay at their own fps (`realtime`, like a camera) or as fast as the pipeline
takes them (`fast`: waits for ring space, never drops). Live sources never wait: the
ring overwrites its oldest slot and the flow stage counts what it missed. A live
source that fails to open, errors or stalls is re-opened with exponential backoff; its
open runs in a helper thread waited for at most open_timeout + OPEN_MARGIN, so an open
that FFmpeg's own timer does not interrupt counts as a failed attempt instead of a hang.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass

import cv2
import zmq

from stream.core.config import CaptureSettings, PreviewSettings
from stream.core.flow import resize_frame
from stream.runtime.doorbell import Doorbell
from stream.runtime.events import SourceEnded
from stream.runtime.preview import PreviewEncoder
from stream.runtime.shm import RingLayout, ShmRing, StatsBoard
from stream.runtime.sources import SourceSpec
from stream.runtime.stage import StageLink, stage_runtime

log = logging.getLogger("twostream")


CAPTURE_NICENESS = 4  # relative to the supervisor; flow and inference stay at its priority
# A URL's open may take this long past open_timeout before it is abandoned. FFmpeg's interrupt ended every
# local RTSP/HTTP open that stalled (before DESCRIBE, SETUP or PLAY, or after PLAY with no RTP) 10-25 ms
# after open_timeout; what it cannot interrupt (getaddrinfo on a dead DNS server) can block for 30 s.
OPEN_MARGIN = 1.0


@dataclass(frozen=True)
class CaptureJob:
    """Everything a capture process needs; picklable for the spawn start method."""

    spec: SourceSpec
    source: int
    ring: RingLayout
    stats_name: str
    stats_rows: int
    flow_endpoint: str  # SourceEnded goes there
    doorbell: str  # the flow stage's doorbell pipe (stream.runtime.doorbell), rung once per frame written
    size: int
    pace: str  # realtime | fast (files only; live sources are always realtime)
    max_frames: int
    capture: CaptureSettings  # timeouts, stall detection, reconnect backoff
    preview: PreviewSettings | None = None  # None: preview off, no per-frame work at all
    preview_endpoint: str = ""  # supervisor's results socket (PULL) for PreviewFrame


def open_capture(spec: SourceSpec, *, open_timeout: float, read_timeout: float) -> cv2.VideoCapture:
    """Open a source with FFmpeg timeouts so a dead camera cannot hang the process."""
    if spec.kind == "webcam":
        return cv2.VideoCapture(int(spec.target))
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout * 1000), cv2.CAP_PROP_READ_TIMEOUT_MSEC,
              int(read_timeout * 1000)]
    # One decoder thread per source: sources already decode in parallel processes, and FFmpeg's default
    # (a thread per core, frame threading) costs ~25% more CPU per 320x240 frame here (twostream bench).
    params += [cv2.CAP_PROP_N_THREADS, 1]
    return cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG, params)


class _Opener:
    """open_capture() of a URL in a helper thread, waited for at most open_timeout + OPEN_MARGIN.

    An open that has not returned by then is abandoned: its thread releases the capture if the open
    ever returns. At most one open is in flight: while an abandoned one is still blocked, no new one
    starts (each attempt fails at once), so a source whose opens never return costs one thread, not
    one per attempt.
    """

    def __init__(self, spec: SourceSpec, settings: CaptureSettings):
        self._spec, self._settings = spec, settings
        self._lock = threading.Lock()
        self._pending: dict | None = None  # the abandoned open still blocked, if any

    def open(self) -> tuple[cv2.VideoCapture | None, str]:
        """(capture, "") once open_capture() returned (opened or not), or (None, why) when it did not in time."""
        with self._lock:
            if self._pending is not None:
                return None, "open still blocked"
            job: dict = {"cap": None, "abandoned": False, "done": threading.Event()}
        threading.Thread(target=self._run, args=(job,), daemon=True, name="capture-open").start()
        if job["done"].wait(self._settings.open_timeout + OPEN_MARGIN):
            return job["cap"], ""
        with self._lock:
            if job["done"].is_set():  # returned just now
                return job["cap"], ""
            job["abandoned"] = True
            self._pending = job
        return None, "open timed out"

    def _run(self, job: dict) -> None:
        cap = open_capture(self._spec, open_timeout=self._settings.open_timeout,
                           read_timeout=self._settings.read_timeout)
        with self._lock:
            job["cap"] = cap
            job["done"].set()
            if not job["abandoned"]:
                return
            self._pending = None
        cap.release()  # nobody waits for it any more: free its sockets and decoder now


class _Reader:
    """Reads frames in a thread so a blocked VideoCapture.read() is detected as a stall, not a hang."""

    def __init__(self, cap: cv2.VideoCapture):
        self._cap = cap
        self._lock = threading.Condition()
        self._frame = None
        self._ok = True
        self._request = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._request and not self._closed:
                    self._lock.wait()
                if self._closed:
                    break
                self._request = False
            ok, frame = self._cap.read()
            with self._lock:
                self._ok, self._frame = ok and frame is not None, frame
                self._lock.notify_all()
                if not self._ok or self._closed:
                    break
        # Released here, by the thread that reads: a read() still blocked on a stalled stream returns
        # within read_timeout and then frees the FFmpeg context, so reconnects do not leak captures.
        self._cap.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def read(self, timeout: float):
        """(ok, frame), or (None, None) when no frame came within `timeout` seconds."""
        with self._lock:
            self._frame = None
            self._request = True
            self._lock.notify_all()
            got = self._lock.wait_for(lambda: self._frame is not None or not self._ok, timeout=timeout)
            if not got:
                return None, None
            return self._ok, self._frame


def capture_main(job: CaptureJob, stop, go=None, ready=None, link: StageLink | None = None) -> None:
    """Process entry point. `ready`/`go` (optional): announce start-up done, then wait for the supervisor's
    go so no source replays while other stages are still loading (their backlog would be dropped).
    `link`: where this stage's log records go (stream.runtime.stage)."""
    cv2.setNumThreads(1)
    # Captures yield the CPU to the one flow and one inference process that every source's windows queue
    # behind: a capture needs ~2% of a core per 25 fps source, and its lag is counted in latency anyway.
    with contextlib.suppress(OSError):
        os.nice(CAPTURE_NICENESS)
    with stage_runtime(link, stats=(job.stats_name, job.stats_rows)) as stage:
        # The end marker must survive a busy (or restarting) flow stage: wait up to 30 s for its delivery.
        push = stage.push(job.flow_endpoint, linger_ms=30000)
        ring = ShmRing(job.ring, create=False)
        bell = Doorbell(job.doorbell)
        stats = stage.stats
        preview = None
        if job.preview is not None:
            # Its own socket with a tiny queue: previews are dropped, never waited for.
            preview = stage.push(job.preview_endpoint, linger_ms=0, hwm=4)
        frames, error = 0, ""
        stage.settle()
        if ready is not None:
            ready.release()
        if go is not None:
            go.wait(60.0)
        try:
            frames, error = _capture_loop(job, stop, ring, stats, bell, stage.alive, preview)
        except Exception as exc:  # report, never die silently: the EOS carries the reason
            error = f"capture failed: {type(exc).__name__}: {exc}"
        finally:
            stats.set_state(job.source, "failed" if error and job.spec.live else "ended")
            push.send_pyobj(SourceEnded(source=job.source, frames=frames, error=error))
            ring.close()
            bell.close()


def _capture_loop(job: CaptureJob, stop, ring: ShmRing, stats: StatsBoard, bell: Doorbell, alive,
                  preview_socket=None) -> tuple[int, str]:
    spec = job.spec
    encoder = None
    if preview_socket is not None:
        encoder = PreviewEncoder(source=job.source, width=job.preview.width, fps=job.preview.fps,
                                 quality=job.preview.quality)
    frames = 0
    epoch = 0  # bumped at every reconnect: the flow stage restarts its chain exactly there
    attempts = 0
    backoff = job.capture.reconnect_initial
    outage_started: float | None = None
    last_error = ""
    opener = _Opener(spec, job.capture) if spec.kind == "url" else None  # files and webcams open inline
    while not stop.is_set():
        why = ""
        if opener is not None:
            cap, why = opener.open()
        else:
            cap = open_capture(spec, open_timeout=job.capture.open_timeout, read_timeout=job.capture.read_timeout)
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            last_error = f"{spec.display}: cannot open" + (f" ({why})" if why else "")
            stats.set_error(job.source, "cannot open")
            if not spec.live:
                return frames, f"{spec.display}: cannot be opened as a video"
            attempts += 1
            stats.set(job.source, "attempts", attempts)
            stats.set_state(job.source, "reconnecting")
            outage_started = outage_started or time.time()
            if job.capture.reconnect_attempts and attempts >= job.capture.reconnect_attempts:
                return frames, f"{last_error} (gave up after {attempts} attempts)"
            # One line per outage (FFmpeg's own reasons are logged at debug level: --verbose)
            log.log(logging.WARNING if attempts == 1 else logging.DEBUG, "%s; retrying in %g s (attempt %d)",
                    last_error, backoff, attempts)
            if stop.wait(backoff):
                break
            backoff = min(backoff * 2, job.capture.reconnect_max)
            continue

        if outage_started is not None and frames > 0:
            fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
            seconds = time.time() - outage_started
            gap_frames = int(round(seconds * (fps if 0 < fps < 1000 else 25.0)))
            stats.add(job.source, "reconnects")
            # Published before the first frame after the gap; the new epoch in the frame ring marks where it is.
            stats.set(job.source, "gap_frames", gap_frames)
            stats.set(job.source, "gap_seconds", seconds)
            epoch += 1
        attempts, backoff, outage_started = 0, job.capture.reconnect_initial, None
        stats.set(job.source, "attempts", 0)
        stats.set_state(job.source, "live")
        fps = cap.get(cv2.CAP_PROP_FPS)
        declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if spec.kind == "file" else 0
        period = 1.0 / fps if spec.kind == "file" and job.pace == "realtime" and 0 < fps < 1000 else 0.0
        reader = _Reader(cap) if spec.live else None
        t0 = time.monotonic()
        wall_t0 = time.time()  # a replayed file's frame k is due at wall_t0 + k * period, like a camera's
        first = frames
        ended_cleanly = False
        frame = None
        while not stop.is_set():
            if reader is not None:
                ok, frame = reader.read(job.capture.stall_seconds)
                if ok is None:
                    last_error = f"{spec.display}: no frame for {job.capture.stall_seconds:g} s (stalled)"
                    stats.set_error(job.source, "stalled")
                    break
            else:
                # Decoded into the previous frame's buffer: a new 230 KB array per 320x240 frame cost ~13 page
                # faults per frame in each of 32 capture processes (the ring and the preview copy what they keep).
                ok, frame = cap.read(frame)
            if not ok:
                ended_cleanly = not spec.live
                last_error = f"{spec.display}: stream ended or read failed"
                if spec.live:
                    stats.set_error(job.source, "read failed")
                break
            # A replayed file in realtime pace is stamped with its schedule (when a camera would have sent the
            # frame), so a capture that falls behind shows its lag in latency_ms instead of hiding it.
            t_capture = wall_t0 + (frames - first) * period if period else time.time()
            small = resize_frame(frame, job.size)
            if spec.kind == "file" and job.pace == "fast":
                if not ring.wait_for_space(stop):
                    break
            ring.write(frame=frames, t_capture=t_capture, epoch=epoch, frame_rgb=small)
            frames += 1
            stats.set(job.source, "frames", frames)
            stats.set(job.source, "t_last_frame", t_capture)
            bell.ring()
            if encoder is not None and encoder.due(t_capture):
                _send_preview(preview_socket, encoder.encode(frame, frame=frames - 1, t_capture=t_capture))
            if job.max_frames and frames >= job.max_frames:
                cap.release()
                return frames, ""
            if period:
                delay = t0 + (frames - first) * period - time.monotonic()
                if delay > 0:
                    # One sleep per frame: the flag's default 5 ms poll woke every capture ~8 times per 40 ms
                    # frame (32 sources: ~6400 wake-ups/s on 2 cores); a stop still lands within one period.
                    stop.wait(delay, poll=0.05)
            if not alive():  # supervisor gone: do not linger
                cap.release()
                return frames, "supervisor exited"
        if reader is not None:
            reader.close()  # its thread releases the capture once a blocked read() has returned
        else:
            cap.release()
        if not spec.live:
            if ended_cleanly:
                return frames, _check_complete(spec, declared, frames)
            return frames, ""
        # live source failed or stalled: reconnect; the outage began with the last frame that ever arrived,
        # also when this session delivered none (a reconnect that opened, then failed before its first frame)
        if not stop.is_set():
            log.warning("%s; reconnecting", last_error)
        stats.set_state(job.source, "reconnecting")
        last = stats.get(job.source, "t_last_frame")
        if frames > 0 and last > 0:
            outage_started = last
        else:
            outage_started = outage_started or time.time()
        if stop.wait(backoff):
            break
        backoff = min(backoff * 2, job.capture.reconnect_max)
    return frames, ""


def _send_preview(socket, preview) -> None:
    if preview is None:
        return
    try:
        socket.send_pyobj(preview, flags=zmq.NOBLOCK)
    except zmq.Again:  # supervisor busy: this preview is simply skipped
        pass


def _check_complete(spec: SourceSpec, declared: int, frames: int) -> str:
    """A file that stops well short of its declared length was truncated or corrupt."""
    if frames == 0:
        return f"{spec.display}: no frame could be decoded"
    if declared > 0 and frames < declared * 0.9 and declared - frames > 2:
        return f"{spec.display}: decoded {frames} of {declared} declared frames (truncated or corrupt)"
    return ""
