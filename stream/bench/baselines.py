"""Baselines with the same networks, in the same invocation (alternated with the pipeline runs), each a plain
single-process loop over the video: decode, flow, and every `stride` frames (once L flows exist) the
spatial and temporal networks in torch eager at batch 1, then fusion.

  seed_tvl1_fullres_eager  the seed recipe (two-stream/TSN): TV-L1 on the decoded frames at their own
                           resolution (as denseflow extracts it), flow resized to the model size
  seed_tvl1_eager          TV-L1 at the model size (cheaper than the seed: a conservative variant)
  dis_eager_threadsT       the bundle's DIS flow at the model size: what most demo scripts do, with
                           torch at T intra-op threads (1 and all cores); ratios use the faster one
  same_engines_loop        the SAME flow and the SAME ONNX Runtime engines as the pipeline (the bundle as
                           shipped, same intra-op threads, batch 1): the like-for-like control that isolates
                           what the multiprocess pipeline itself adds (issue 12: the old "5.4x vs plain loop"
                           was mostly the engine)
Frames/s = frames / loop time (model loading excluded, as for the pipeline's steady frames/s).

The seed-recipe ratios are SPEED ONLY: no temporal network trained on TV-L1 flow has been evaluated side
by side with the DIS one on the same held-out split, so they claim nothing about equal accuracy.
Bundles of other families skip the baselines with the reason in `reports/baselines/skipped`.
"""
from __future__ import annotations

import time

import cv2
import numpy as np

from stream.bench.common import BenchContext, describe_bundle, two_stream
from stream.bench.eager import eager_networks

ROOT = "reports/baselines"


def _frames(ctx: BenchContext, kind: str) -> int:
    if kind.startswith("seed_tvl1_fullres"):
        return 8 if ctx.quick else 24
    if kind.startswith("seed"):
        return 16 if ctx.quick else 40
    if kind == "dis_eager_threadsP":  # torch's default threads can be 10x slower on a busy 2-core box
        return 60 if ctx.quick else 100
    return 60 if ctx.quick else 300


def plain_loop(ctx: BenchContext, nets, *, backend: str, max_frames: int, full_res: bool = False,
               engines=None) -> tuple[float, int]:
    """(frames/s, frames) of the single-process loop; flows/windows exactly as the runtime defines them.
    nets: torch eager modules; or engines: the runtime's loaded bundle (ONNX Runtime), nets then unused."""
    from dataclasses import replace

    from stream.core.config import Settings
    from stream.core.flow import FlowComputer, normalize_rgb, quantize_flow, resize_frame, stack_flows, to_gray
    from stream.core.fusion import fuse_scores
    from stream.core.windows import WindowClock

    b = ctx.bundle
    settings = replace(b.flow, backend=backend)  # everything else as the bundle says (bound, stacking, subtract)
    compute = FlowComputer(settings)
    stride = Settings().pipeline.stride  # the same windows as the pipeline
    video = ctx.cache.get("fast_video", ctx.video)
    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    flows: list[np.ndarray] = []
    prev = None
    frames = 0
    clock = WindowClock(b.flow_length, stride)
    w = b.fusion_weights
    if engines is not None:
        def infer(s_np, t_np):
            return engines.spatial.run(s_np), engines.temporal.run(t_np)
    else:
        import torch

        def infer(s_np, t_np):
            with torch.inference_mode():
                return nets.spatial(torch.from_numpy(s_np)).numpy(), nets.temporal(torch.from_numpy(t_np)).numpy()
    # first calls allocate: a script pays that once, before its loop
    infer(np.zeros((1, 3, b.input_size, b.input_size), np.float32),
          np.zeros((1, 2 * b.flow_length, b.input_size, b.input_size), np.float32))
    t0 = time.perf_counter()
    while frames < max_frames:
        ok, frame = cap.read()
        if not ok:
            break
        rgb = resize_frame(frame, b.input_size)
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if full_res else to_gray(rgb)
        frames += 1
        if prev is not None:
            flow = compute(prev, gray)
            if full_res:  # resize the field to the model size and scale the displacements with it
                h, w_ = gray.shape
                flow = cv2.resize(flow, (b.input_size, b.input_size), interpolation=cv2.INTER_LINEAR)
                flow[..., 0] *= b.input_size / w_
                flow[..., 1] *= b.input_size / h
            flows.append(quantize_flow(flow, settings.bound))
            flows = flows[-b.flow_length:]
            if clock.add_flow():
                ls, lt = infer(normalize_rgb(rgb[None], b.mean, b.std), stack_flows(flows, settings.stacking)[None])
                fuse_scores(ls, lt, spatial_weight=w["spatial"], temporal_weight=w["temporal"])
        prev = gray
    elapsed = time.perf_counter() - t0
    cap.release()
    return frames / elapsed, frames


KINDS = (("dis_eager_threads1", "dis", 1, False), ("dis_eager_threadsP", "dis", 0, False),
         ("seed_tvl1_eager", "tvl1", 1, False), ("seed_tvl1_fullres_eager", "tvl1", 1, True))
SAME_ENGINES = "same_engines_loop"


def prepare(ctx: BenchContext) -> str | None:
    """None when the baselines run; else why they are skipped (they are two-stream loops: a spatial network on
    the newest frame and a temporal one on a flow stack). The same-engines loop needs no torch; the eager loops
    are skipped without it."""
    if not two_stream(ctx.bundle):
        return (f"{describe_bundle(ctx.bundle)}: the baselines are two-stream loops (spatial [frame] + temporal "
                "[flow_stack] networks, DIS/TV-L1 flow, torch eager); defined for two-stream bundles only")
    ctx.cache["baseline_samples"] = {k[0]: [] for k in KINDS}
    ctx.cache["baseline_samples"][SAME_ENGINES] = []
    return None


def trial(ctx: BenchContext) -> None:
    import os

    from stream.bench.stages import loaded_bundle

    # Like for like with the pipeline: its engines (same bundle, same threads), its flow, OpenCV at 1 thread
    # as in every pipeline process; one process instead of capture / flow / inference processes.
    cv2.setNumThreads(1)
    fps, n = plain_loop(ctx, None, backend=ctx.bundle.flow.backend, max_frames=_frames(ctx, SAME_ENGINES),
                        engines=loaded_bundle(ctx))
    ctx.cache["baseline_samples"][SAME_ENGINES].append(fps)
    ctx.log(f"baseline {SAME_ENGINES}: {fps:.1f} frames/s over {n} frames (the pipeline's engines, one process)")
    nets = eager_networks(ctx)
    if nets is None:
        return
    import torch

    before = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0))
    cv2.setNumThreads(0)  # OpenCV's default (all cores), as a script gets it
    try:
        for kind, backend, threads, full_res in KINDS:
            if backend == "dis":
                backend = ctx.bundle.flow.backend
            torch.set_num_threads(threads or cores)
            fps, n = plain_loop(ctx, nets, backend=backend, max_frames=_frames(ctx, kind), full_res=full_res)
            ctx.cache["baseline_samples"][kind].append(fps)
            ctx.log(f"baseline {kind}: {fps:.1f} frames/s over {n} frames (torch threads {threads or cores})")
    finally:
        torch.set_num_threads(before)
        cv2.setNumThreads(1)


def _throughput_runs(r) -> list[tuple[str, str, str]]:
    """(report key, source count, ratio label) of each throughput run this invocation recorded."""
    if "throughput" not in r.doc["reports"]:
        return []
    keys = sorted(k for k in r.get("reports/throughput") if k.startswith("sources"))
    return [(k, k.replace("sources", ""), f"{k.replace('sources', '')}source{'s' if k != 'sources1' else ''}")
            for k in keys]


def finish(ctx: BenchContext) -> None:
    r = ctx.report
    b = ctx.bundle
    for kind, samples in ctx.cache["baseline_samples"].items():
        if samples:
            r.measure(f"{ROOT}/{kind}/frames_per_s", samples, "frames/s", frames=_frames(ctx, kind),
                      flow="tvl1" if kind.startswith("seed") else b.flow.backend,
                      flow_size="source" if "fullres" in kind else f"{b.input_size}px",
                      networks=("onnxruntime, the bundle as shipped (" + str(b.provenance.get("quantization", "fp32"))
                                + f"), {ctx.threads} thread(s)") if kind == SAME_ENGINES else "torch eager fp32")
    throughput = _throughput_runs(r)
    for n_path, n, label in throughput:
        r.ratio(f"pipeline_speedup_vs_single_process_same_engines_{label}", f"reports/throughput/{n_path}/frames_per_s",
                f"{ROOT}/{SAME_ENGINES}/frames_per_s",
                f"twostream fast-pace frames/s ({n} source(s)) ÷ one process running the same flow and the same "
                f"ONNX Runtime engines ({ctx.threads} thread(s), {b.input_size}px): what the multiprocess "
                f"pipeline adds")
    nets = eager_networks(ctx)
    if nets is None:
        r.put(f"{ROOT}/skipped", "torch is not installed (eager loops skipped)")
        return
    r.put(f"{ROOT}/eager_source", nets.source)
    dis = max((k for k in ("dis_eager_threads1", "dis_eager_threadsP") if ctx.cache["baseline_samples"][k]),
              key=lambda k: r.value(f"{ROOT}/{k}/frames_per_s"))
    r.put(f"{ROOT}/dis_eager_best", dis)
    for n_path, n, label in throughput:
        r.ratio(f"speedup_vs_dis_eager_loop_{label}", f"reports/throughput/{n_path}/frames_per_s",
                f"{ROOT}/{dis}/frames_per_s",
                f"MIXED FACTORS: twostream fast-pace frames/s ({n} source(s), ONNX Runtime as shipped) ÷ plain "
                f"single-process DIS + torch eager fp32 loop (its faster torch thread setting): engine, precision and "
                f"pipeline at once; the like-for-like factors are onnxruntime_fp32_speedup_vs_torch_eager_fp32_*, "
                f"onnxruntime_int8_speedup_vs_onnxruntime_fp32_* and pipeline_speedup_vs_single_process_same_engines_*")
        r.ratio(f"speedup_vs_seed_recipe_speed_only_{label}", f"reports/throughput/{n_path}/frames_per_s",
                f"{ROOT}/seed_tvl1_fullres_eager/frames_per_s",
                f"SPEED ONLY (no accuracy parity shown): twostream fast-pace frames/s ({n} source(s); DIS at "
                f"{b.input_size}px, ONNX Runtime as shipped) ÷ seed recipe (TV-L1 at the source size + torch eager "
                f"fp32 loop); differs in flow algorithm, flow resolution, engine and precision at once")
        r.ratio(f"speedup_vs_model_size_tvl1_loop_speed_only_{label}", f"reports/throughput/{n_path}/frames_per_s",
                f"{ROOT}/seed_tvl1_eager/frames_per_s",
                f"SPEED ONLY: twostream fast-pace frames/s ({n} source(s)) ÷ TV-L1 at the model size + torch "
                f"eager fp32 loop (differs in flow algorithm, engine and precision)")
