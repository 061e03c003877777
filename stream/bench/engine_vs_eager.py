"""Engine vs eager: the same two networks per window in ONNX Runtime (the runtime's engine) and in torch
eager, on the same real inputs, with the same number of intra-op threads, timed alternately.

Ratios are like for like, one factor each (issue 12): ONNX Runtime fp32 vs torch eager fp32 (the engine
alone), and the bundle as shipped (int8 when quantised) vs ONNX Runtime fp32 (quantisation alone; its
accuracy cost on held-out data is in BENCHMARKS.md / benchmarks/). The old "int8 ONNX Runtime vs fp32 eager"
ratio mixed both factors and is no longer reported.

Bundles of other families (not spatial [frame] + temporal [flow_stack]): run_networks times each network of
the bundle in ONNX Runtime, per window at the same batch sizes, and beside it the torch eager module that
train.families builds for it (eager.family_eager_networks), or says `torch_eager_skipped: <reason>`."""
from __future__ import annotations

from stream.bench.common import BenchContext, describe_bundle, interleaved, two_stream
from stream.bench.eager import eager_networks, family_eager_networks, fp32_onnx, parity
from stream.bench.stages import loaded_bundle, prepare_inputs, window_batch

ROOT = "reports/engine_vs_eager"


def batches(ctx: BenchContext) -> list[int]:
    return [1, 4] if ctx.quick else [1, 8]


def run_networks(ctx: BenchContext) -> None:
    """Any bundle: ONNX Runtime ms per window of each network (and its torch eager module where train.families
    builds it), the window inputs built by stream.core.inputs, interleaved per batch size."""
    import numpy as np

    r = ctx.report
    b = ctx.bundle
    loaded = loaded_bundle(ctx)
    names = [n.name for n in b.networks]
    r.put(f"{ROOT}/family", b.family)
    r.put(f"{ROOT}/networks", names)
    r.put(f"{ROOT}/bundle_quantization", str(b.provenance.get("quantization", "as exported")))
    eager, source = family_eager_networks(ctx)
    if eager is None:
        r.put(f"{ROOT}/torch_eager_skipped", f"{describe_bundle(b)}: {source}")
    else:
        import torch

        r.put(f"{ROOT}/eager_source", source)
    r.put(f"{ROOT}/threads", {"onnxruntime_intra_op": ctx.threads, **({"torch": torch.get_num_threads()} if eager
                                                                        else {})})
    for batch in batches(ctx):
        inputs = prepare_inputs(ctx, *window_batch(ctx, batch))
        fns = {("onnxruntime", n): (lambda e=loaded.engines[n], x=inputs[n]: e.run(*x)) for n in names}
        if eager is not None:
            tensors = {n: [torch.from_numpy(a) for a in inputs[n]] for n in names}

            def eager_call(m, x):
                with torch.inference_mode():
                    return m(*x)

            fns.update({("torch_eager", n): (lambda m=eager[n], x=tensors[n]: eager_call(m, x)) for n in names})
            if batch == batches(ctx)[-1]:
                r.put(f"{ROOT}/parity", {f"{n}_max_abs_diff": float(np.max(np.abs(
                    eager_call(eager[n], tensors[n]).numpy() - loaded.engines[n].run(*inputs[n])))) for n in names})
        s = interleaved(fns, repeats=max(5, ctx.repeats * 2), warmup=2, inner=3 if batch == 1 else 1)
        for engine in sorted({k[0] for k in s}):
            for n in names:
                r.measure(f"{ROOT}/batch{batch}/networks/{n}/{engine}_ms_per_window",
                          [v / batch for v in s[(engine, n)]], "ms/window", batch=batch)
            total = [sum(x) / batch for x in zip(*(s[(engine, n)] for n in names), strict=True)]
            r.measure(f"{ROOT}/batch{batch}/{engine}_ms_per_window", total, "ms/window", batch=batch,
                      what=f"{' + '.join(names)}, per window")
        if eager is not None:
            r.ratio(f"onnxruntime_bundle_speedup_vs_torch_eager_fp32_batch{batch}",
                    f"{ROOT}/batch{batch}/torch_eager_ms_per_window", f"{ROOT}/batch{batch}/onnxruntime_ms_per_window",
                    f"torch eager fp32 ms/window ÷ ONNX Runtime ms/window (the {b.family} bundle as exported, "
                    f"precision per network in its provenance) at batch {batch}, {ctx.threads} thread(s)")
    ctx.log(f"engine ({b.family}): " + ", ".join(
        f"{n} {r.value(f'{ROOT}/batch1/networks/{n}/onnxruntime_ms_per_window'):.2f}" for n in names)
        + " ms/window (ONNX Runtime, batch 1)")


def run(ctx: BenchContext) -> None:
    if not two_stream(ctx.bundle):
        run_networks(ctx)
        return
    r = ctx.report
    nets = eager_networks(ctx)
    if nets is None:
        r.put(f"{ROOT}/skipped", "torch is not installed")
        return
    import torch

    loaded = loaded_bundle(ctx)
    r.put(f"{ROOT}/eager_source", nets.source)
    r.put(f"{ROOT}/eager_detail", nets.detail)
    r.put(f"{ROOT}/bundle_quantization", nets.quantization)
    fp32 = None
    if True:  # also in --quick: without fp32 there is no like-for-like engine ratio
        paths = fp32_onnx(ctx, nets)
        if paths is not None:
            from engines.onnxrt import OnnxRuntimeEngine

            fp32 = [OnnxRuntimeEngine(p, threads=ctx.threads) for p in paths]
            r.put(f"{ROOT}/fp32_onnx", "the eager modules exported with train.onnx_export (fp32), timed beside the "
                                       f"{nets.quantization} bundle")
    r.put(f"{ROOT}/threads", {"onnxruntime_intra_op": ctx.threads, "torch": torch.get_num_threads()})
    for batch in batches(ctx):
        inputs = prepare_inputs(ctx, *window_batch(ctx, batch))
        s_in, t_in = inputs["spatial"][0], inputs["temporal"][0]
        if batch == batches(ctx)[-1]:
            r.put(f"{ROOT}/parity", parity(ctx, nets, s_in, t_in))
        ts, tt = torch.from_numpy(s_in), torch.from_numpy(t_in)

        # Inputs bound as defaults: each closure times this batch's arrays (ruff B023).
        def ort_window(s_in=s_in, t_in=t_in):
            loaded.spatial.run(s_in)
            loaded.temporal.run(t_in)

        def eager_window(ts=ts, tt=tt):
            with torch.inference_mode():
                nets.spatial(ts)
                nets.temporal(tt)

        fns = {"onnxruntime": ort_window, "torch_eager": eager_window}
        if fp32 is not None:
            def ort_fp32_window(s_in=s_in, t_in=t_in):
                fp32[0].run(s_in)
                fp32[1].run(t_in)

            fns["onnxruntime_fp32"] = ort_fp32_window
        inner = 3 if batch == 1 else 1
        s = interleaved(fns, repeats=max(5, ctx.repeats * 2), warmup=2, inner=inner)
        for key, vals in s.items():
            r.measure(f"{ROOT}/batch{batch}/{key}_ms_per_window", [v / batch for v in vals], "ms/window",
                      batch=batch, what="spatial + temporal network, per window")
        if fp32 is not None:
            r.ratio(f"onnxruntime_fp32_speedup_vs_torch_eager_fp32_batch{batch}",
                    f"{ROOT}/batch{batch}/torch_eager_ms_per_window",
                    f"{ROOT}/batch{batch}/onnxruntime_fp32_ms_per_window",
                    f"torch eager fp32 ms/window ÷ ONNX Runtime fp32 ms/window at batch {batch}, "
                    f"{ctx.threads} intra-op thread(s) each, {ctx.bundle.input_size}px (the engine alone)")
            if nets.quantization != "fp32":
                r.ratio(f"onnxruntime_{nets.quantization}_speedup_vs_onnxruntime_fp32_batch{batch}",
                        f"{ROOT}/batch{batch}/onnxruntime_fp32_ms_per_window",
                        f"{ROOT}/batch{batch}/onnxruntime_ms_per_window",
                        f"ONNX Runtime fp32 ms/window ÷ ONNX Runtime {nets.quantization} (the bundle as shipped) "
                        f"ms/window at batch {batch}, {ctx.threads} thread(s) (quantisation alone)")
        elif nets.quantization in ("", "none"):  # the bundle itself is fp32: it is the like-for-like engine
            r.ratio(f"onnxruntime_fp32_speedup_vs_torch_eager_fp32_batch{batch}",
                    f"{ROOT}/batch{batch}/torch_eager_ms_per_window", f"{ROOT}/batch{batch}/onnxruntime_ms_per_window",
                    f"torch eager fp32 ms/window ÷ ONNX Runtime fp32 (the bundle) ms/window at batch {batch}, "
                    f"{ctx.threads} intra-op thread(s) each, {ctx.bundle.input_size}px (the engine alone)")
        else:
            r.note("engine-vs-eager: no fp32 ONNX export of the eager networks, so no like-for-like engine ratio")
    ctx.log(f"engine vs eager ({nets.source}): " + ", ".join(
        f"{x['name']} {x['value']:.2f}x" for x in r.doc["ratios"] if x["name"].startswith("onnxruntime_")))
