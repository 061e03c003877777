"""Flow stage: one process for all sources. Reads each frame ring, computes flow between consecutive
frames, keeps the per-source flow ring (one slot per frame: the frame, and the quantised flow ending at it)
and announces windows. The flow ring is where past frames live for clip and frame_stack inputs; a
bundle with no flow_stack input gets no flow computed at all (FlowJob.needs_flow).

Live sources get latest-frame semantics: when more than `live_queue` frames wait, the
older ones are skipped (counted as dropped) and the flow chain restarts after the skip: no flow spans
more than one frame interval, so every window holds the motion scale the networks were trained on.
After a reconnect (a new epoch in the frame ring) the chain restarts, so no window spans an outage.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from stream.core.config import FlowDeviceSettings, PipelineSettings
from stream.core.flow import FlowComputer, FlowSettings, quantize_flow, to_gray
from stream.core.windows import WindowClock
from stream.runtime.doorbell import Doorbell
from stream.runtime.events import SourceEnded, WindowReady, WindowsEnded
from stream.runtime.shm import RingLayout, ShmRing, SlotOverwritten, StatsBoard
from stream.runtime.stage import StageLink, stage_runtime


@dataclass(frozen=True)
class FlowJob:
    frame_rings: tuple[RingLayout, ...]
    flow_rings: tuple[RingLayout, ...]
    live: tuple[bool, ...]  # per source: drop instead of waiting
    stats_name: str
    flow_settings: FlowSettings  # the bundle's flow algorithm and parameters
    flow_length: int
    pipeline: PipelineSettings  # stride, live_queue
    in_endpoint: str  # PULL, bound here: end markers (SourceEnded)
    out_endpoints: tuple[str, ...]  # PUSH to each inference process; source i goes to i mod len
    doorbell: str = ""  # the pipe captures ring per frame (stream.runtime.doorbell); "": read the rings every 100 ms
    device: FlowDeviceSettings = FlowDeviceSettings()  # [flow]: "cuda" uses stream.core.flow_cuda
    # Bundle format 2: False when no network takes a flow_stack (frames only: no flow computed at all);
    # span: frames a window covers before its newest (engines.bundle.Bundle.span; None: flow_length).
    needs_flow: bool = True
    span: int | None = None
    # Costly networks (supervisor.AUTO_SPLIT_MS): live sources get window phases (window_phase), cheap ones keep
    # their windows aligned so the inference stage batches them.
    window_phases: bool = False


def make_flow_computer(settings: FlowSettings, size: int, device: FlowDeviceSettings | None = None):
    """The CPU FlowComputer, or the CUDA one when `device` ([flow]) says so (refusing another algorithm unless
    allowed)."""
    if device is None or device.device != "cuda":
        return FlowComputer(settings)
    from stream.core.errors import ConfigError
    from stream.core.flow_cuda import CUDA_FLOW_BACKENDS, CudaFlowComputer

    backend = settings.backend if device.cuda_backend == "same" else device.cuda_backend
    if backend not in CUDA_FLOW_BACKENDS:
        raise ConfigError(
            f"[flow] device = 'cuda': the bundle's flow algorithm {backend!r} has no CUDA version; keep "
            f"device = 'cpu', or choose [flow] cuda_backend and set allow_other = true to accept another")
    return CudaFlowComputer(backend, size, bundle_backend=settings.backend, allow_other_algorithm=device.allow_other,
                            subtract=settings.subtract)


def window_phase(source: int, *, live: bool, processes: int, stride: int) -> int:
    """Frames by which a live source's windows are offset from the others' (0 for files in fast pace).

    Sources started together (and the bench's frame-aligned cameras) all close a window on the same frame, so
    every inference process gets all its windows at once, one stride apart. For a costly network that is a
    queue: i3d (~25 ms per window, batching saves nothing) at 8 sources had four windows waiting behind each
    other, p99 166 ms; with phases p99 51-84 ms. Sources of one inference process (source i: process i mod N)
    get consecutive phases, so their windows close on different frames. Used only for costly networks
    (FlowJob.window_phases): a cheap one batches aligned windows better (convfusion, 32 sources: aligned p99
    106 ms at 82 % CPU, phased 173-196 ms at 88 %). Files in fast pace keep phase 0: their windows are the
    same as on a single source (window_end_frames)."""
    if not live or stride <= 1:
        return 0
    return (source // max(processes, 1)) % stride


class _SourceFlow:
    def __init__(self, source: int, job: FlowJob):
        self.source = source
        self.live = job.live[source]
        self.frames = ShmRing(job.frame_rings[source], create=False)
        self.flows = ShmRing(job.flow_rings[source], create=False)
        shape = job.frame_rings[source].fields[0][1]
        self.needs_flow = job.needs_flow
        self.compute = make_flow_computer(job.flow_settings, shape[0], job.device) if job.needs_flow else None
        self.bound = job.flow_settings.bound
        stride = job.pipeline.stride
        self.clock = WindowClock(job.flow_length if job.span is None else job.span, stride,
                                 phase=window_phase(source, live=self.live and job.window_phases,
                                                    processes=len(job.out_endpoints), stride=stride))
        self.pushes_every_frame = job.device.device == "cuda"  # the CUDA computer keeps its own previous frame
        self.prev_gray: np.ndarray | None = None
        self.next_index = self.frames.consumed  # resume where a previous incarnation stopped
        self.windows = 0
        self.gap = (0, 0.0)
        self.epoch: int | None = None  # a restarted stage adopts the current epoch without reporting a gap
        self.rgb = np.empty(shape, dtype=np.uint8)
        self.skipped = False  # frames were dropped since the last one processed

    def restart_chain(self) -> None:
        self.prev_gray = None
        self.clock.reset()
        if self.compute is not None and hasattr(self.compute, "reset"):
            self.compute.reset()


def flow_main(job: FlowJob, stop, link: StageLink | None = None) -> None:
    import zmq

    cv2.setNumThreads(1)
    with stage_runtime(link, stats=(job.stats_name, len(job.frame_rings))) as stage:
        pull = stage.pull(job.in_endpoint)
        pushes = [stage.push(endpoint) for endpoint in job.out_endpoints]
        stats = stage.stats
        bell = Doorbell(job.doorbell) if job.doorbell else None
        poller = zmq.Poller()
        poller.register(pull, zmq.POLLIN)
        if bell is not None:
            poller.register(bell.fileno(), zmq.POLLIN)
        sources: list[_SourceFlow] = []
        try:
            sources += [_SourceFlow(i, job) for i in range(len(job.frame_rings))]
            stage.settle()
            while stage.running(stop):
                # Woken by a doorbell byte (new frames), an end marker, or every 100 ms regardless: the frame
                # rings' counters say what is new, so nothing depends on a bell having been heard.
                if poller.poll(100) and bell is not None:
                    bell.drain()  # before reading the counters: a bell rung after that read wakes the next poll
                while pull.poll(0):
                    msg = pull.recv_pyobj()
                    if isinstance(msg, SourceEnded):  # everything it wrote is in its ring: process it, then end
                        src = sources[msg.source]
                        push = pushes[msg.source % len(pushes)]
                        _advance(src, job, stats, push, stop)
                        push.send_pyobj(WindowsEnded(source=msg.source, frames=msg.frames, windows=src.windows,
                                                     error=msg.error))
                for src in sources:
                    if src.frames.written > src.next_index:
                        _advance(src, job, stats, pushes[src.source % len(pushes)], stop)
        finally:
            for s in sources:
                s.frames.close()
                s.flows.close()
            if bell is not None:
                bell.close()


def _advance(src: _SourceFlow, job: FlowJob, stats: StatsBoard, push, stop) -> None:
    """Process every frame written to this source's ring since the last call."""
    written = src.frames.written
    if src.live and written - src.next_index > job.pipeline.live_queue:
        skip_to = written - job.pipeline.live_queue
        stats.add(src.source, "dropped", skip_to - src.next_index)
        src.next_index = skip_to
        src.skipped = True
    while src.next_index < written:
        index = src.next_index
        try:
            frame_no, t_capture, _, epoch = src.frames.meta(index)
            src.frames.read(index, "frame_rgb", out=src.rgb)
        except SlotOverwritten:  # lapped by a live writer: count it and move on
            stats.add(src.source, "dropped")
            src.next_index += 1
            src.frames.set_consumed(src.next_index)
            src.skipped = True
            continue
        src.next_index += 1
        src.frames.set_consumed(src.next_index)
        if src.epoch is not None and epoch != src.epoch:  # first frame after a reconnect: nothing spans the gap
            src.restart_chain()
            src.gap = (int(stats.get(src.source, "gap_frames")), stats.get(src.source, "gap_seconds"))
        src.epoch = epoch
        if src.skipped:  # frames were skipped: a flow across them would span k frames, a motion scale
            src.restart_chain()  # training never saw, so the chain (and the window clock) starts again here
            src.skipped = False
        # Every frame of the chain gets a slot (its RGB, and the flow ending at it when the bundle takes flow):
        # clip and frame_stack inputs read past frames from here; the chain's first slot has no flow.
        fields = {"frame_rgb": src.rgb}
        if src.needs_flow:
            gray = to_gray(src.rgb)
            prev, src.prev_gray = src.prev_gray, gray
            raw = src.compute(prev, gray) if prev is not None or src.pushes_every_frame else None
            if raw is not None:
                fields["flow"] = quantize_flow(raw, src.bound)
        if not src.live and not src.flows.wait_for_space(stop):
            return
        end_index = src.flows.write(frame=frame_no, t_capture=t_capture, t_ready=time.time(), **fields)
        if "flow" in fields:
            stats.add(src.source, "flows")
        if src.clock.add_frame():
            src.windows += 1
            stats.add(src.source, "windows")
            gap_frames, gap_seconds = src.gap
            src.gap = (0, 0.0)
            push.send_pyobj(WindowReady(source=src.source, end_index=end_index, frame=frame_no, t_capture=t_capture,
                                        t_flow=time.time(), gap_frames=gap_frames, gap_seconds=gap_seconds))
