"""Stage costs on real footage, each in isolation on one core, in CPU time of the measuring thread
(time.thread_time: every stage runs single-threaded, and CPU time does not count the time other
processes on a shared machine held the core): decode, resize, flow per backend at the
model resolution, window preparation, each network of the bundle per window at several batch sizes
(window inputs built by stream.core.inputs exactly as the inference stage builds them), fusion and
publishing. Any bundle family: a bundle whose networks take no flow_stack has no flow stage cost (the
pipeline computes no flow for it) and no flow backend comparison (`flow_skipped` says why).

The per-frame costs of the work each pipeline process does (capture, flow stage, inference,
publish) are kept in ctx.cache["costs"] for the throughput report's stage-cost bound.
"""
from __future__ import annotations

import time
from dataclasses import replace

import cv2
import numpy as np

from stream.bench.common import BenchContext, describe_bundle, interleaved, median, time_call, two_stream
from stream.core.ports import free_port

FLOW_VARIANTS = (("dis", "ultrafast"), ("dis", "fast"), ("dis", "medium"), ("farneback", "-"), ("tvl1", "-"))
ROOT = "reports/stages"


def batch_sizes(ctx: BenchContext) -> list[int]:
    return [1, 4] if ctx.quick else [1, 2, 4, 8, 16]


def _decode_resize(ctx: BenchContext, max_frames: int) -> tuple[list[float], list[float], int, tuple[int, int]]:
    """(decode ms/frame samples, resize ms/frame samples, frames per sample, source size)."""
    from stream.core.flow import resize_frame
    from stream.runtime.capture import open_capture
    from stream.runtime.sources import parse_source

    size = ctx.bundle.input_size
    dec, res = [], []
    n, shape = 0, (0, 0)
    for _ in range(ctx.repeats):
        cap = open_capture(parse_source(str(ctx.video)), open_timeout=10.0, read_timeout=5.0)  # as capture does
        frames = []
        t0 = time.thread_time()
        while len(frames) < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
        t1 = time.thread_time()
        cap.release()
        if not frames:
            raise RuntimeError(f"{ctx.video}: no frame decoded")
        for f in frames:
            resize_frame(f, size)
        t2 = time.thread_time()
        n, shape = len(frames), frames[0].shape[:2]
        dec.append((t1 - t0) * 1000.0 / n)
        res.append((t2 - t1) * 1000.0 / n)
    return dec, res, n, shape


def source_size_frames(ctx: BenchContext, count: int) -> np.ndarray:
    """The first `count` frames of the bench video at their own size, RGB (N, H, W, 3)."""
    cap = cv2.VideoCapture(str(ctx.video), cv2.CAP_FFMPEG)
    out = []
    while len(out) < count:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    return np.stack(out)


def flow_samples(ctx: BenchContext, backend: str, preset: str, frames: np.ndarray, pairs: int) -> list[float]:
    """ms per flow pair (algorithm only) on consecutive real frames at the model size."""
    from stream.core.flow import FlowComputer, FlowSettings, to_gray

    settings = FlowSettings(backend=backend, preset=preset if backend == "dis" else "fast")
    compute = FlowComputer(settings)
    gray = [to_gray(f) for f in frames[:pairs + 1]]
    compute(gray[0], gray[1])  # warm-up (allocations)
    out = []
    for _ in range(ctx.repeats):
        t0 = time.thread_time()
        for i in range(1, len(gray)):
            compute(gray[i - 1], gray[i])
        out.append((time.thread_time() - t0) * 1000.0 / (len(gray) - 1))
    return out


def flow_stage_samples(ctx: BenchContext, frames: np.ndarray, pairs: int) -> list[float]:
    """ms per frame of what the flow stage does with the bundle's settings: gray, flow, quantise."""
    from stream.core.flow import FlowComputer, quantize_flow, to_gray

    b = ctx.bundle
    compute = FlowComputer(b.flow)
    use = frames[:pairs + 1]
    out = []
    for _ in range(ctx.repeats + 1):
        t0 = time.thread_time()
        prev = to_gray(use[0])
        for i in range(1, len(use)):
            gray = to_gray(use[i])
            quantize_flow(compute(prev, gray), b.flow.bound)
            prev = gray
        out.append((time.thread_time() - t0) * 1000.0 / (len(use) - 1))
    return out[1:]


def window_batch(ctx: BenchContext, batch: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Raw data of `batch` real windows of the bench video, as the rings hold it (stream.core.inputs.gather_windows):
    uint8 RGB frames (B, F, S, S, 3) and quantised flows (B, L, S, S, 2), each None when no network reads it."""
    from stream.core.inputs import gather_windows
    from stream.core.offline import video_flows

    b = ctx.bundle
    needs = b.needs
    key = "window_source"
    if key not in ctx.cache:
        frames = ctx.frames(max_frames=max(needs.span + 2, 48 if ctx.quick else 96))
        ctx.cache[key] = (frames, video_flows(frames, b.flow) if b.needs_flow else None)
    frames, flows = ctx.cache[key]
    ends = [needs.span + (i * 3) % max(1, len(frames) - needs.span) for i in range(batch)]
    return gather_windows(frames, flows, ends, needs)


def prepare_inputs(ctx: BenchContext, rgb: np.ndarray | None, flows: np.ndarray | None) -> dict[str, list[np.ndarray]]:
    """{network name: its inputs}: exactly what stream.runtime.inference builds before the engine calls (the one
    input builder, stream.core.inputs)."""
    from stream.core.inputs import build_inputs

    b = ctx.bundle
    return {net.name: build_inputs(net.inputs, rgb, flows, mean=b.mean, std=b.std, stacking=b.flow.stacking)
            for net in b.networks}


def loaded_bundle(ctx: BenchContext):
    if "loaded" not in ctx.cache:
        from engines.loader import open_bundle

        ctx.cache["loaded"] = open_bundle(ctx.model, kind="onnxruntime", threads=ctx.threads)
    return ctx.cache["loaded"]


def engine_samples(ctx: BenchContext, batch: int) -> dict[str, list[float]]:
    """ms per call (whole batch) for: window prep, each network's engine (by name), fusion; interleaved."""
    from stream.core.fusion import fuse_networks

    loaded = loaded_bundle(ctx)
    fusion = loaded.bundle.fusion
    rgb, fl = window_batch(ctx, batch)
    inputs = prepare_inputs(ctx, rgb, fl)
    logits = {name: loaded.engines[name].run(*x) for name, x in inputs.items()}
    inner = 1 if batch >= 4 else 3
    fns = {"prepare": lambda: prepare_inputs(ctx, rgb, fl)}
    for name, x in inputs.items():
        fns[name] = lambda e=loaded.engines[name], x=x: e.run(*x)
    fns["fusion"] = lambda: fuse_networks(logits, method=fusion.method, weights=loaded.bundle.fusion_weights,
                                          network=fusion.network)
    return interleaved(fns, repeats=max(3, ctx.repeats), warmup=2, inner=inner, clock=time.thread_time)


def publish_samples(ctx: BenchContext, messages: int = 200) -> list[float]:
    """ms per published prediction (decide: policy, top-k; publish: JSON encode + ZeroMQ send) on a loopback
    PUB socket, with the pipeline's default settings."""
    from dataclasses import replace

    import zmq

    from stream.core.config import Settings
    from stream.runtime.decider import Decider
    from stream.runtime.events import WindowResult
    from stream.runtime.publisher import Publisher

    b = ctx.bundle
    s = Settings()
    ctx_z = zmq.Context()
    pub = Publisher(replace(s.publish, endpoint=f"tcp://127.0.0.1:{free_port()}"), ctx=ctx_z)
    decider = Decider(["bench"], labels=b.labels, policy=s.policy, top=s.fusion.top_k, flow_length=b.span)
    p = np.full(b.num_classes, 1.0 / b.num_classes).tolist()
    now = time.time()
    # what the inference stage sends: spatial/temporal for two-stream bundles, else one entry per network
    per_net = dict(spatial=p, temporal=p) if two_stream(b) else dict(spatial=[], temporal=[],
                                                                      streams={n.name: p for n in b.networks})
    r = WindowResult(source=0, frame=b.span + 10, t_capture=now, t_flow=now, t_infer_start=now, t_infer_end=now,
                     fused=p, batch=1, gap_frames=0, gap_seconds=0.0, **per_net)

    def publish() -> None:
        for msg in decider.decide(r):
            pub.send(msg)

    try:
        return time_call(publish, repeats=ctx.repeats, warmup=20, inner=messages // (4 if ctx.quick else 1),
                         clock=time.thread_time)
    finally:
        pub.close()
        ctx_z.term()


def ensure_costs(ctx: BenchContext) -> dict:
    """Per-frame / per-window costs of each pipeline stage (measured once per invocation)."""
    if "costs" in ctx.cache:
        return ctx.cache["costs"]
    r = ctx.report
    b = ctx.bundle
    # At least 5 repeats: the throughput bound is computed at the medians and its interval at the quartiles.
    ctx = replace(ctx, repeats=max(5, ctx.repeats))
    cv2.setNumThreads(1)  # as in every pipeline process
    nframes = 48 if ctx.quick else 160
    dec, res, n, shape = _decode_resize(ctx, nframes)
    r.measure(f"{ROOT}/decode_ms_per_frame", dec, "ms/frame", frames=n, source_size=f"{shape[1]}x{shape[0]}")
    r.measure(f"{ROOT}/resize_ms_per_frame", res, "ms/frame", to=f"{b.input_size}x{b.input_size} RGB")
    r.measure(f"{ROOT}/capture_ms_per_frame", [a + c for a, c in zip(dec, res, strict=True)], "ms/frame",
              what="decode + resize (capture process work)")
    r.put(f"{ROOT}/family", b.family)
    r.put(f"{ROOT}/networks", {n.name: [spec.describe() for spec in n.inputs] for n in b.networks})
    flow_path = None
    if b.needs_flow:
        frames = ctx.frames(max_frames=nframes)
        pairs = min(len(frames) - 1, 24 if ctx.quick else 96)
        flow_path = f"{ROOT}/flow_stage_ms_per_frame"
        r.measure(flow_path, flow_stage_samples(ctx, frames, pairs), "ms/frame",
                  what=f"to_gray + {b.flow.backend}/{b.flow.preset} flow + quantise (flow process work)")
    else:
        r.put(f"{ROOT}/flow_skipped", f"{describe_bundle(b)}: no network takes a flow_stack, the pipeline computes "
                                      "no flow (its flow stage only moves frames into the ring)")
    batches = {}
    names = [n.name for n in b.networks]
    for batch in batch_sizes(ctx):
        s = engine_samples(ctx, batch)
        for key, vals in s.items():
            r.measure(f"{ROOT}/engine/batch{batch}/{key}_ms_per_call", vals, "ms/call", batch=batch)
        total = [sum(x) / batch for x in zip(*s.values(), strict=True)]
        r.measure(f"{ROOT}/engine/batch{batch}/inference_ms_per_window", total, "ms/window",
                  what=f"prepare + {' + '.join(names)} + fusion, per window")
        for name in names:
            r.measure(f"{ROOT}/engine/batch{batch}/{name}_ms_per_window", [x / batch for x in s[name]], "ms/window")
        batches[batch] = f"{ROOT}/engine/batch{batch}/inference_ms_per_window"
    r.measure(f"{ROOT}/publish_ms_per_window", publish_samples(ctx), "ms/window")
    ctx.cache["costs"] = {"capture": f"{ROOT}/capture_ms_per_frame", "flow": flow_path,
                          "inference": batches, "publish": f"{ROOT}/publish_ms_per_window"}
    return ctx.cache["costs"]


def run(ctx: BenchContext) -> None:
    r = ctx.report
    b = ctx.bundle
    ensure_costs(ctx)
    if not b.needs_flow:
        ctx.log(f"stages: decode {r.value(ROOT + '/decode_ms_per_frame'):.2f} ms/frame, no flow, inference "
                f"{r.value(ROOT + '/engine/batch1/inference_ms_per_window'):.2f} ms/window at batch 1")
        return
    frames = ctx.frames(max_frames=48 if ctx.quick else 160)
    for backend, preset in FLOW_VARIANTS:
        name = f"{backend}-{preset}" if backend == "dis" else backend
        pairs = min(len(frames) - 1, (3 if ctx.quick else 12) if backend == "tvl1" else (24 if ctx.quick else 96))
        r.measure(f"{ROOT}/flow/{name}/ms_per_pair", flow_samples(ctx, backend, preset, frames, pairs), "ms/pair",
                  pairs=pairs, size=f"{b.input_size}x{b.input_size}")
    # The seed recipe's flow: TV-L1 on the decoded frames at their own size (as denseflow extracts it), beside
    # DIS and TV-L1 at the model size: the flow factor of the seed-recipe comparison, alone.
    source = source_size_frames(ctx, 4 if ctx.quick else 13)
    pairs = len(source) - 1
    r.measure(f"{ROOT}/flow/tvl1-source-size/ms_per_pair", flow_samples(ctx, "tvl1", "-", source, pairs), "ms/pair",
              pairs=pairs, size=f"{source.shape[2]}x{source.shape[1]}")
    for name in ("tvl1", "tvl1-source-size"):
        size = f"source size {source.shape[2]}x{source.shape[1]}" if "source" in name else f"{b.input_size}px"
        r.ratio(f"flow_dis_{b.flow.preset}_speedup_vs_{name.replace('-', '_')}", f"{ROOT}/flow/{name}/ms_per_pair",
                f"{ROOT}/flow/dis-{b.flow.preset}/ms_per_pair",
                f"TV-L1 ms/pair ({size}) "
                f"÷ DIS/{b.flow.preset} ms/pair ({b.input_size}px), one thread each: the flow factor alone")
    ctx.log(f"stages: decode {r.value(ROOT + '/decode_ms_per_frame'):.2f} ms/frame, flow "
            f"{r.value(ROOT + '/flow_stage_ms_per_frame'):.2f} ms/frame, inference "
            f"{r.value(ROOT + '/engine/batch1/inference_ms_per_window'):.2f} ms/window at batch 1")


def rows(ctx: BenchContext) -> list[tuple[str, str]]:
    """Readable table lines."""
    r = ctx.report
    out = []
    try:
        st = r.get(ROOT)
    except KeyError:
        return out
    for key in ("decode_ms_per_frame", "resize_ms_per_frame", "capture_ms_per_frame", "flow_stage_ms_per_frame",
                "publish_ms_per_window"):
        if key in st:
            out.append((f"stage {key}", f"{st[key]['median']:.3f}"))
    for name, m in st.get("flow", {}).items():
        out.append((f"flow {name} ms/pair", f"{m['ms_per_pair']['median']:.3f}"))
    names = list(st.get("networks", {})) or ["spatial", "temporal"]
    for batch, m in st.get("engine", {}).items():
        out.append((f"engine {batch}: {' / '.join(names)} / total ms/window",
                    " / ".join(f"{m[f'{n}_ms_per_window']['median']:.2f}" for n in names)
                    + f" / {m['inference_ms_per_window']['median']:.2f}"))
    return out


__all__ = ["run", "rows", "ensure_costs", "median"]
