"""Triton leg: the bundle's networks on a real local tritonserver (engines.triton_server, python backend
running the same ONNX files with onnxruntime) vs in-process ONNX Runtime, in the same invocation.

Two measurements, each alternating the two engines so load drift hits both alike:
  - per batch: ms per window batch (one call per network of the bundle) at batch 1 and 8 (--quick: 1 and 4),
    same real inputs; plus the largest score difference between the two (parity);
  - 1-source throughput: frames/s of a fast-pace 1-source pipeline run with [engine] kind = "triton" vs
    "onnxruntime".
On one machine this is pure overhead (gRPC round trips, serialisation, the server's own scheduling and
the python backend on the same 2 cores); what Triton buys — a shared GPU server for many camera hosts —
is not measurable here. The ratios say what the remote engine costs, nothing more.
"""
from __future__ import annotations

import time

from stream.bench.common import BenchContext, interleaved
from stream.bench.runner import run_pipeline
from stream.bench.stages import loaded_bundle, prepare_inputs, window_batch

ROOT = "reports/triton"


def run(ctx: BenchContext) -> None:
    import numpy as np

    from engines.triton_repo import export_triton
    from engines.triton_server import LocalTritonServer, find_install
    from stream.core.config import EngineSettings

    r = ctx.report
    install, why = find_install()
    if install is None:
        r.put(f"{ROOT}/skipped", why)
        r.note(f"triton: skipped ({why})")
        return
    repo = ctx.tmp / "triton-repo"
    export_triton(ctx.model, repo, kind="cpu", prefix="bench_")
    server = LocalTritonServer(install, repo, log_path=ctx.tmp / "tritonserver.log")
    t0 = time.monotonic()
    server.start(timeout=120)
    ready_s = time.monotonic() - t0
    try:
        from engines.loader import open_bundle

        options = EngineSettings(kind="triton", triton_url=server.url, triton_model_prefix="bench_",
                                 triton_timeout=30.0)
        remote = open_bundle(ctx.model, kind="triton", options=options)
        local = loaded_bundle(ctx)
        r.put(f"{ROOT}/server", {"tritonserver": "nvidia-pytriton 2.51, python backend running the bundle's ONNX "
                                                "files with onnxruntime (1 intra-op thread), 127.0.0.1 gRPC",
                                 "ready_after_start_s": round(ready_s, 3)})
        for batch in ([1, 4] if ctx.quick else [1, 8]):
            inputs = prepare_inputs(ctx, *window_batch(ctx, batch))
            diff = max(float(np.max(np.abs(remote.engines[n].run(*x) - local.engines[n].run(*x))))
                       for n, x in inputs.items())

            def ort(inputs=inputs):
                for n, x in inputs.items():
                    local.engines[n].run(*x)

            def tri(inputs=inputs):
                for n, x in inputs.items():
                    remote.engines[n].run(*x)

            samples = interleaved({"onnxruntime": ort, "triton": tri}, repeats=max(5, 3 * ctx.repeats), warmup=2)
            for key, values in samples.items():
                r.measure(f"{ROOT}/batch{batch}/{key}_ms_per_batch", values, "ms")
            r.put(f"{ROOT}/batch{batch}/max_abs_logit_diff", diff)
            r.ratio(f"triton_over_onnxruntime_batch{batch}", f"{ROOT}/batch{batch}/triton_ms_per_batch",
                    f"{ROOT}/batch{batch}/onnxruntime_ms_per_batch",
                    "time per window batch, Triton (local server) / in-process ONNX Runtime: > 1 is overhead")
            ctx.log(f"triton: batch {batch}: {r.value(f'{ROOT}/batch{batch}/triton_ms_per_batch'):.1f} ms vs ORT "
                    f"{r.value(f'{ROOT}/batch{batch}/onnxruntime_ms_per_batch'):.1f} ms (max |diff| {diff:.2g})")
        from stream.bench.throughput import prepare

        if "fast_video" not in ctx.cache:
            prepare(ctx)
        frames = 300 if ctx.quick else 1500
        fps = {"onnxruntime": [], "triton": []}
        for _ in range(ctx.repeats):
            for key, engine in (("onnxruntime", None), ("triton", {"kind": "triton", "triton_url": server.url,
                                                                   "triton_model_prefix": "bench_"})):
                result = run_pipeline(ctx, video=ctx.cache["fast_video"], sources=1, pace="fast", max_frames=frames,
                                      timeout=60.0 + frames / 20.0, engine=engine)
                fps[key].append(result.steady_fps()[0])
                ctx.log(f"triton: 1 source fast pace, {key}: {fps[key][-1]:.0f} frames/s"
                        + (f" (errors: {result.errors})" if result.errors else ""))
        for key, values in fps.items():
            r.measure(f"{ROOT}/throughput_1_source/{key}_frames_per_s", values, "frames/s", frames=frames)
        r.ratio("triton_over_onnxruntime_throughput_1_source", f"{ROOT}/throughput_1_source/triton_frames_per_s",
                f"{ROOT}/throughput_1_source/onnxruntime_frames_per_s",
                "1-source fast-pace frames/s, Triton engine / in-process ONNX Runtime: < 1 is the cost")
    finally:
        server.stop()
