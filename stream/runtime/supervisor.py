"""The supervisor: checks inputs, owns shared memory and the PUB socket, starts and watches the stages.

    capture (1 process per source) --frame rings--> flow (1) --flow rings--> inference (N) --> supervisor --> ZeroMQ PUB

N inference processes ([pipeline] inference_processes; 0: auto, `inference_processes()`) each serve a fixed
share of the sources (source i: process i mod N), so one source's windows and end marker stay in order.

Stages talk over local ZeroMQ PUSH/PULL sockets (small events only) so a stage that
dies cannot corrupt a queue; the supervisor restarts it (bounded, with backoff). Seq
numbers and smoothing live here, so they survive stage restarts.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import zmq

from engines.bundle import check_rings, read_bundle
from engines.loader import open_bundle
from stream.core.config import Settings
from stream.core.errors import SourceError
from stream.core.policy import resolve
from stream.runtime.capture import CaptureJob, capture_main
from stream.runtime.decider import Decider
from stream.runtime.doorbell import create_doorbell
from stream.runtime.events import SourceEnded, WindowResult, WindowsEnded
from stream.runtime.flow_stage import FlowJob, flow_main
from stream.runtime.inference import InferenceJob, inference_main, time_one_window
from stream.runtime.preview import PreviewFrame
from stream.runtime.publisher import Publisher
from stream.runtime.shm import RingLayout, ShmRing, StatsBoard
from stream.runtime.sources import SourceSpec
from stream.runtime.stage import SharedFlag, StageLink, StageLog, event_sockets, quiet_stderr

log = logging.getLogger("twostream")

# What the supervisor does when a stage process dies before the run is over:
RESTART = "restart"  # flow, inference: start it again (max_restarts, with backoff); the run stops when spent
RESTART_OR_END = "restart-or-end-source"  # capture of a live source: re-open it likewise; when spent, end the source
END_SOURCE = "end-source"  # capture of a file: never replayed from its start; the source ends with the reason


@dataclass
class StageProcess:
    """One row of the supervisor's table of monitored stage processes."""

    name: str  # process name twostream-<name>; the kernel's (ps, /proc/PID/comm) is ts-<name>
    target: Callable  # the stage main
    args: tuple
    restart: str  # RESTART | RESTART_OR_END | END_SOURCE
    source: int | None = None  # the source a capture serves
    proc: mp.process.BaseProcess | None = None  # None: not started, or finished and no longer watched
    restarts: int = 0


@dataclass
class RunSummary:
    """What happened per source; the CLI turns it into an exit status."""

    eos: dict[str, dict] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    predictions: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors and all("error" not in e for e in self.eos.values())


def check_sources(specs: list[SourceSpec]) -> None:
    """Refuse a run that cannot do anything useful before starting it.

    Missing files and webcams are always errors. A file with no decodable frame is refused
    here only when no other source could run; otherwise its capture ends that source alone
    with an end-of-stream message carrying `error`, and the other sources carry on.
    """
    unreadable = []
    for spec in specs:
        if spec.kind == "file":
            path = Path(spec.target)
            if not path.exists():
                raise SourceError(f"{spec.target}: no such file")
            if not path.is_file():
                raise SourceError(f"{spec.target}: not a file")
            with quiet_stderr():  # FFmpeg's own complaint would precede ours; ours names the file
                cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
                ok = cap.isOpened() and cap.read()[0]
                cap.release()
            if not ok:
                unreadable.append(spec)
        elif spec.kind == "webcam" and sys.platform.startswith("linux"):
            if not Path(f"/dev/video{spec.target}").exists():
                raise SourceError(f"webcam {spec.target}: no such device (/dev/video{spec.target} is missing)")
    if unreadable and len(unreadable) == len(specs):
        raise SourceError(f"{unreadable[0].target}: not a readable video (no frame could be decoded)")


# A network this costly per window (ms, timed at start-up) gets, with auto, one inference process per core,
# and its live sources get window phases (flow_stage.window_phase). Measured on 2 cores (docs/models.md,
# capacity): i3d (~25 ms int8) saturates one process at ~40 windows/s, 4 cameras at stride 5; two processes
# with phases serve 8. A cheap network (late ~3 ms, convfusion ~3.5 ms) keeps one process, which already
# batches the aligned windows of 28-36 cameras (phases measured worse for it; two processes not measured).
AUTO_SPLIT_MS = 8.0


def inference_processes(setting: int, *, sources: int, ms_per_window: float, cores: int | None) -> int:
    """How many inference processes a run starts: the setting when > 0 (at most one per source); for 0 (auto)
    one per core (at most one per source) when a window costs >= AUTO_SPLIT_MS, else 1."""
    if setting > 0:
        return max(1, min(setting, sources))
    if ms_per_window >= AUTO_SPLIT_MS:
        return max(1, min(cores or 1, sources))
    return 1


class Pipeline:
    def __init__(self, specs: list[SourceSpec], settings: Settings, *, on_message=None):
        self.specs = specs
        self.settings = settings
        self.on_message = on_message  # called with every published payload (for --print)
        self.names = [s.name for s in specs]
        p = settings.pipeline
        # the rings must hold the largest window before any network is loaded (2 x its frames + stride)
        check_rings(read_bundle(p.model), flow_ring=p.flow_ring, stride=p.stride)
        loaded = open_bundle(p.model, kind=settings.engine.kind, threads=settings.engine.threads,
                             options=settings.engine)
        self.bundle = loaded.bundle
        self.engine_backend = loaded.backend
        self.engine_choice = loaded.choice
        self.ms_per_window = 0.0  # one window of every network, timed here when there is more than one source
        if len(specs) > 1:
            self.ms_per_window = time_one_window(loaded.engines)
        # the cores this process may run on (a container's CPU set), not the host's count
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        self.n_inference = inference_processes(p.inference_processes, sources=len(specs),
                                               ms_per_window=self.ms_per_window, cores=cores)
        del loaded
        # fail now, with the reason, rather than in the flow process (a bundle without flow_stack computes no flow)
        if settings.flow.device == "cuda" and self.bundle.needs_flow:
            from stream.runtime.flow_stage import make_flow_computer

            make_flow_computer(self.bundle.flow, self.bundle.input_size, settings.flow)
        self._mp = mp.get_context("spawn")
        # Stop flags, not multiprocessing.Event: a killed stage must never be able to block set() (see SharedFlag).
        self._stop_capture = SharedFlag(self._mp)
        self._stop_stages = SharedFlag(self._mp)
        # `go` stays an Event: it is set once, before any capture can have been killed while waiting, and
        # waking every capture at the same instant measurably avoided start-up drops (a polled flag did not).
        self._go = self._mp.Event()  # captures start replaying once every stage is loaded (_wait_ready)
        self._ready = self._mp.Semaphore(0)
        self.stages: list[StageProcess] = []  # the table of monitored processes, filled by _jobs()
        self._rings: list[ShmRing] = []
        self._tmp = Path(tempfile.mkdtemp(prefix="twostream-"))
        os.chmod(self._tmp, 0o700)
        self._signal = None
        self._fps_marks: dict[int, tuple[float, float]] = {}
        self._ctx: zmq.Context | None = None
        self._flow_push = None  # end markers on behalf of dead captures

    # setup ---------------------------------------------------------------------------------------
    def _make_rings(self) -> None:
        s = self.bundle.input_size
        n = len(self.specs)
        self.stats = StatsBoard(ShmRing.new_name("tsstat"), n, create=True)
        self.frame_layouts, self.flow_layouts = [], []
        for _ in self.specs:
            fl = RingLayout(ShmRing.new_name("tsframe"), self.settings.pipeline.frame_ring, (("frame_rgb", (s, s, 3)),))
            # one slot per frame: its RGB (frame, clip, frame_stack inputs) and, when a network takes a
            # flow_stack, the flow ending at it; 112 px, 64 slots: 4.0 MB per source with flow, 2.4 MB without
            fields = (("flow", (s, s, 2)), ("frame_rgb", (s, s, 3))) if self.bundle.needs_flow \
                else (("frame_rgb", (s, s, 3)),)
            wl = RingLayout(ShmRing.new_name("tsflow"), self.settings.pipeline.flow_ring, fields)
            self._rings += [ShmRing(fl, create=True), ShmRing(wl, create=True)]
            self.frame_layouts.append(fl)
            self.flow_layouts.append(wl)

    def _jobs(self) -> None:
        p, b = self.settings.pipeline, self.bundle
        self.ep_flow = f"ipc://{self._tmp}/flow"
        self.ep_infers = tuple(f"ipc://{self._tmp}/infer{k}" for k in range(self.n_inference))
        self.ep_result = f"ipc://{self._tmp}/result"
        self.doorbell = create_doorbell(str(self._tmp / "frames.bell"))
        live = tuple(spec.live or p.pace == "realtime" for spec in self.specs)
        self.flow_job = FlowJob(
            frame_rings=tuple(self.frame_layouts), flow_rings=tuple(self.flow_layouts), live=live,
            stats_name=self.stats.name, flow_settings=b.flow, flow_length=b.flow_length, pipeline=p,
            in_endpoint=self.ep_flow, out_endpoints=self.ep_infers, doorbell=self.doorbell, device=self.settings.flow,
            needs_flow=b.needs_flow, span=b.span, window_phases=self.ms_per_window >= AUTO_SPLIT_MS)
        self.infer_jobs = [InferenceJob(
            model=str(b.path), engine=self.settings.engine, fusion=self.settings.fusion,
            flow_rings=tuple(self.flow_layouts), live=live, stats_name=self.stats.name, max_batch=p.max_batch,
            in_endpoint=endpoint, out_endpoint=self.ep_result, max_batch_ms=p.max_batch_ms,
            ms_per_window=self.ms_per_window)
            for endpoint in self.ep_infers]
        self.capture_jobs = [
            CaptureJob(spec=spec, source=i, ring=self.frame_layouts[i], stats_name=self.stats.name,
                       stats_rows=len(self.specs), flow_endpoint=self.ep_flow, doorbell=self.doorbell,
                       size=b.input_size, pace=p.pace,
                       max_frames=p.max_frames, capture=self.settings.capture,
                       preview=self.settings.preview if self.settings.preview.enabled else None,
                       preview_endpoint=self.ep_result)
            for i, spec in enumerate(self.specs)
        ]
        # Stages log through the supervisor (StageLog on the results socket), at the level set here.
        link = StageLink(log_endpoint=self.ep_result, log_level=log.getEffectiveLevel())
        stop = self._stop_stages
        # one process: "inference" (ts-inference), as always; several: "inference:K" (ts-inference:K)
        names = ["inference"] if len(self.infer_jobs) == 1 else [f"inference:{k}" for k in range(len(self.infer_jobs))]
        self.stages = [StageProcess(name, inference_main, (job, stop, link), RESTART)
                       for name, job in zip(names, self.infer_jobs, strict=True)]
        self.stages.append(StageProcess("flow", flow_main, (self.flow_job, stop, link), RESTART))
        self.stages += [StageProcess(f"capture:{i}", capture_main,
                                     (job, self._stop_capture, self._go, self._ready, link),
                                     RESTART_OR_END if self.specs[i].live else END_SOURCE, source=i)
                        for i, job in enumerate(self.capture_jobs)]

    @property
    def _procs(self) -> dict[str, mp.process.BaseProcess]:
        """Running (or not yet reaped) stage processes by name."""
        return {st.name: st.proc for st in self.stages if st.proc is not None}

    def _start(self, stage: StageProcess) -> None:
        # Stage processes compute in one thread each (numpy's BLAS included: the area resize multiplies small
        # matrices); a spawned child reads this when it imports numpy. 30+ captures x a BLAS thread per core
        # would only fight over the same 2 cores.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        proc = self._mp.Process(target=stage.target, args=stage.args, name=f"twostream-{stage.name}", daemon=True)
        proc.start()
        stage.proc = proc

    # run -----------------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        settings = self.settings
        summary = RunSummary()
        ctx = self._ctx = zmq.Context()
        # fuse (inference stage) -> decide (per-source policy, seq) -> publish (ZeroMQ)
        # the bundle's [policy] ("none" threshold, background class) unless the config sets its own
        self.decider = Decider(self.names, labels=self.bundle.labels,
                               policy=resolve(settings.policy, self.bundle.policy),
                               top=settings.fusion.top_k, flow_length=self.bundle.span)
        publisher = Publisher(settings.publish, ctx=ctx)
        results = ctx.socket(zmq.PULL)
        old_handlers = self._install_signals()
        try:
            self._make_rings()
            self._jobs()
            results.bind(self.ep_result)
            for stage in self.stages:
                self._start(stage)
            self._wait_ready()
            log.info("%d source(s), model %s, engine %s, %d inference process(es), publishing on %s",
                     len(self.specs), self.bundle.path, self.engine_choice, self.n_inference,
                     settings.publish.endpoint)
            self._loop(results, publisher, summary)
        finally:
            self._restore_signals(old_handlers)
            self._shutdown()
            results.close(0)
            if self._flow_push is not None:
                self._flow_push.close(0)
            publisher.close()
            ctx.term()
        return summary

    def _wait_ready(self, timeout: float = 60.0) -> None:
        """Let the sources go once flow and inference listen (models loaded) and every capture process is up.

        Without this, a realtime source replays while the other processes still import and load models,
        and its first frames are dropped as backlog. A stage that died or a timeout ends the wait anyway
        (supervision then handles it).
        """
        sockets = [Path(ep[len("ipc://"):]) for ep in (self.ep_flow, *self.ep_infers)]
        deadline = time.monotonic() + timeout
        waiting = len(self.specs)
        while time.monotonic() < deadline and self._signal is None:
            if waiting and self._ready.acquire(timeout=0.02):
                waiting -= 1
                continue
            if not waiting and all(p.exists() for p in sockets):
                break
            if any(not proc.is_alive() for proc in self._procs.values()):
                break
            time.sleep(0.01)
        self._go.set()

    def _loop(self, results, publisher: Publisher, summary: RunSummary) -> None:
        interval = self.settings.publish.status_interval
        ended: set[int] = set()
        next_status = time.monotonic()
        deadline = None
        t_start = time.time()
        while len(ended) < len(self.specs):
            if self._signal is not None and deadline is None:
                log.info("signal %s: draining in-flight windows", self._signal)
                self._stop_capture.set()
                deadline = time.monotonic() + self.settings.pipeline.stop_timeout
            if deadline is not None and time.monotonic() > deadline:
                summary.errors.append("stopped before every source drained (stop_timeout reached)")
                break
            # Handle everything that is waiting before the periodic work: results come in batches.
            ready, handled = results.poll(50), 0
            while ready and handled < 256:  # bounded, so status and supervision still run under load
                self._handle(results.recv_pyobj(), publisher, summary, ended, t_start)
                ready, handled = results.poll(0), handled + 1
            now = time.monotonic()
            if now >= next_status:
                next_status = now + interval
                for i in range(len(self.specs)):
                    if i not in ended:
                        self._publish_status(publisher, i, t_start, ended)
            self._supervise(ended, summary)

    def _handle(self, msg, publisher: Publisher, summary: RunSummary, ended: set[int], t_start: float) -> None:
        if isinstance(msg, StageLog):  # a stage's log record, through our logging (format, level, stderr)
            logging.getLogger(msg.name).log(msg.level, "%s", msg.message)
        elif isinstance(msg, WindowResult):
            for out in self.decider.decide(msg):
                self._emit(publisher.send(out))
            summary.predictions += 1
        elif isinstance(msg, WindowsEnded):
            if msg.source in ended:  # a repeated end marker (see _supervise)
                return
            ended.add(msg.source)
            eos = publisher.send(self.decider.end(
                msg.source, frames=msg.frames, dropped=int(self.stats.get(msg.source, "dropped")),
                windows_dropped=int(self.stats.get(msg.source, "windows_dropped")), error=msg.error))
            self._publish_status(publisher, msg.source, t_start, ended)
            summary.eos[self.names[msg.source]] = eos
            self._emit(eos)
        elif isinstance(msg, PreviewFrame):
            publisher.send_preview(self.decider.preview(msg.source, frame=msg.frame, t_capture=msg.t_capture,
                                                        width=msg.width, height=msg.height), msg.jpeg)

    def _publish_status(self, publisher: Publisher, i: int, t_start: float, ended: set[int]) -> None:
        row = self.stats.row(i)
        now = time.time()
        # fps over the last status interval (since the start for the first report)
        t_prev, frames_prev = self._fps_marks.get(i, (t_start, 0.0))
        self._fps_marks[i] = (now, row["frames"])
        status = {
            "state": "ended" if i in ended else self.stats.state(i),
            "frames": int(row["frames"]),
            "fps": round((row["frames"] - frames_prev) / max(now - t_prev, 1e-6), 2),
            "dropped": int(row["dropped"]),
            "windows": self.decider.published[i],
            "windows_dropped": int(row["windows_dropped"]),
            "reconnects": int(row["reconnects"]),
            "attempts": int(row["attempts"]),
            "last_error": self.stats.last_error(i),
            "engine": self.engine_backend,
            "engine_state": "unavailable" if row.get("engine_down") else "ok",
            "url": self.specs[i].display,
        }
        self._emit(publisher.send(self.decider.status(i, status)))

    def _emit(self, payload: dict) -> None:
        if self.on_message is not None:
            self.on_message(payload)

    def _supervise(self, ended: set[int], summary: RunSummary) -> None:
        """Apply each dead stage's restart policy; a capture that dies is a source failure (its EOS never came)."""
        for stage in self.stages:
            proc = stage.proc
            if proc is None or proc.is_alive() or self._stop_stages.is_set():
                continue
            if stage.source is not None:
                i = stage.source
                if proc.exitcode != 0 and i not in ended:
                    # Died without its end marker (killed, crashed). A live source is re-opened within the
                    # restart budget; a file is not replayed from its start: that source ends, with the reason.
                    if stage.restart == RESTART_OR_END and self._restart(stage):
                        continue
                    why = "capture kept crashing" if stage.restart == RESTART_OR_END else "capture process died"
                    self._end_source(i, f"{self.specs[i].display}: {why} (exit code {proc.exitcode}); source stopped")
                stage.proc = None  # finished: no longer watched
                continue
            if not self._restart(stage):
                raise SourceError(f"{stage.name} stage kept crashing ({stage.restarts} restarts); stopping")
            # End markers of captures that already finished may have died with the stage: send them again
            # (a duplicate end is ignored), so every source still gets its EOS.
            for capture in self.stages:
                if capture.source is not None and capture.source not in ended and capture.proc is None:
                    self._end_source(capture.source, "")

    def _end_source(self, i: int, error: str) -> None:
        """Send the end marker a dead capture could not: the flow stage drains the source, the EOS carries `error`."""
        if self._flow_push is None:
            _, self._flow_push = event_sockets(self._ctx, connect=self.ep_flow)
        if error:
            log.warning("%s", error)
        self._flow_push.send_pyobj(SourceEnded(source=i, frames=int(self.stats.get(i, "frames")), error=error))

    def _restart(self, stage: StageProcess) -> bool:
        n = stage.restarts
        if n >= self.settings.pipeline.max_restarts:
            return False
        stage.restarts = n + 1
        log.warning("%s stage exited (code %s); restarting (%d/%d)", stage.name, stage.proc.exitcode, n + 1,
                    self.settings.pipeline.max_restarts)
        time.sleep(min(0.1 * 2 ** n, 5.0))
        self._start(stage)
        return True

    def _shutdown(self) -> None:
        self._stop_capture.set()
        self._stop_stages.set()
        deadline = time.monotonic() + 5.0
        procs = list(self._procs.values())
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        for ring in self._rings:
            ring.close()
            ring.unlink()
        if hasattr(self, "stats"):
            self.stats.close()
            self.stats.unlink()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _install_signals(self):
        def handler(signum, _frame):
            self._signal = signal.Signals(signum).name

        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                old[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread (embedded use)
                pass
        return old

    def _restore_signals(self, old) -> None:
        for sig, h in old.items():
            signal.signal(sig, h)
