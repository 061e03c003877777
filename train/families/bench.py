"""Cost of a family network: parameters, GFLOPs per window (torch FLOP counter: 2 x multiply-adds of
convs and matmuls) and ONNX Runtime ms per window (CPU, 1 thread, batch 1 and 8, median of timed runs
after warm-up, fp32 and int8 graphs as exported). Each timing is given twice: wall clock, and the
calling thread's CPU time (with intra_op_num_threads = 1 ORT computes on the calling thread), which
other tenants of a shared CPU inflate far less than wall time."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def params_and_gflops(model, example: tuple) -> tuple[int, float]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(*example)
    return params, counter.get_total_flops() / 1e9 / example[0].shape[0]


def ort_ms(path: str | Path, shapes: dict[str, tuple[int, ...]], batch: int, runs: int = 20, threads: int = 1,
           warmup: int = 3) -> tuple[float, float]:
    """(wall, thread CPU) median ms per window of one ONNX graph (ms per call / batch)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {k: rng.uniform(-1, 1, size=(batch, *s)).astype(np.float32) for k, s in shapes.items()}
    for _ in range(warmup):
        sess.run(None, feed)
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.thread_time()
        sess.run(None, feed)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    return float(np.median(wall)) * 1000.0 / batch, float(np.median(cpu)) * 1000.0 / batch
