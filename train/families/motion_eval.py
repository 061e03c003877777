"""MotionNet's flow against DIS on held-out frames: photometric reconstruction error, endpoint difference, cost.

For windows of held-out videos, each of the L consecutive frame pairs is reconstructed by warping
the second frame back with (a) MotionNet's flow, (b) the extraction's DIS flow (the runtime's,
dequantised: clipped to +-bound), (c) zero flow; the mean absolute RGB error (pixel units 0..255)
says how well each flow explains the motion. Endpoint difference = mean |MotionNet - DIS| vector
length in pixels (DIS is not ground truth: this is agreement, not error). Cost: MotionNet's ONNX
Runtime ms for all L flows of a window (1 thread) against OpenCV DIS (the bundle preset) and
TV-L1 for the same L frame pairs at the same size (1 thread).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _load_motion(path: Path):
    from train.families.loop import load_family_checkpoint
    from train.families.motion import TinyMotionNet

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("meta", {}).get("family") == "hidden":
        model, meta = load_family_checkpoint(path)
        return model.motion.eval(), meta["config"]
    state = ckpt["model"]
    L = state["flow1.weight"].shape[0] // 2
    width = state["enc1.0.weight"].shape[0]
    net = TinyMotionNet(L, width)
    net.load_state_dict(state, strict=True)
    return net.eval(), {"stack_length": L, "motion_width": width, "bound": 20.0, "mean": [127.0] * 3,
                        "std": [128.0] * 3}


def motion_vs_dis(run: str | Path, extracted: str | Path, index: dict, rels: list[str], windows: int = 8) -> dict:
    import cv2

    from stream.core.flow import FlowSettings, _make_algorithm, dequantize_flow
    from stream.core.offline import window_ends
    from train.extract import load_video
    from train.families.bench import ort_ms
    from train.families.export import export_graph
    from train.families.hidden import MotionOnly
    from train.families.motion import pairs, photometric_error, to_pixels

    motion, cfg = _load_motion(Path(run))
    L, bound = int(cfg["stack_length"]), float(index["flow"]["bound"])
    mean = np.asarray(cfg.get("mean", [127.0] * 3), np.float32)
    std = np.asarray(cfg.get("std", [128.0] * 3), np.float32)
    sums = {"motionnet": 0.0, "dis": 0.0, "zero": 0.0, "epe": 0.0}
    n_pairs = 0
    size = int(index["input_size"])
    for rel in rels:
        frames, flows = load_video(extracted, index["videos"][rel])
        for e in window_ends(len(frames), L, windows):
            x = (frames[e - L:e + 1].astype(np.float32) - mean) / std  # (L+1, S, S, 3)
            stack = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2).reshape(1, -1, size, size)))
            with torch.no_grad():
                mflow = to_pixels(motion(stack)[0].clamp(-1, 1), bound, size)  # (L, 2, S, S) px
                dflow = torch.from_numpy(np.ascontiguousarray(
                    dequantize_flow(flows[e - L:e]).transpose(0, 3, 1, 2))) * bound  # (L, 2, S, S) px
                first, second = pairs(stack, L)
                scale = float(std.mean())  # back to 0..255 pixel units
                sums["motionnet"] += float(photometric_error(first, second, mflow).sum()) * scale
                sums["dis"] += float(photometric_error(first, second, dflow).sum()) * scale
                sums["zero"] += float(photometric_error(first, second, torch.zeros_like(dflow)).sum()) * scale
                sums["epe"] += float((mflow - dflow).norm(dim=1).mean(dim=(1, 2)).sum())
            n_pairs += L
    result = {"pairs": n_pairs, "videos": len(rels), "bound": bound, "stack_length": L,
              "photometric_mae_0_255": {k: round(sums[k] / max(1, n_pairs), 4) for k in ("motionnet", "dis", "zero")},
              "endpoint_difference_px": round(sums["epe"] / max(1, n_pairs), 4)}
    # cost per window (L flows)
    with tempfile.TemporaryDirectory() as tmp:
        shapes = {"frame_stack": (3 * (L + 1), size, size)}
        path = export_graph(MotionOnly(motion), Path(tmp) / "motion.onnx", ("frame_stack",), shapes)
        wall, cpu = ort_ms(path, shapes, 1, runs=20)
        result["motionnet_ort_ms_per_window"] = {"wall": round(wall, 3), "thread_cpu": round(cpu, 3)}
    frames, _ = load_video(extracted, index["videos"][rels[0]], flows=False)
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames[:L + 1]]
    cv2.setNumThreads(1)
    for name, settings in (("dis_fast", FlowSettings(backend="dis", preset="fast")),
                           ("tvl1", FlowSettings(backend="tvl1"))):
        try:
            algo = _make_algorithm(settings)
        except Exception as exc:  # tvl1 needs opencv-contrib; say so instead of a number
            result[f"{name}_ms_per_window"] = f"not measured ({exc})"
            continue
        wall, cpu = [], []
        for _ in range(3):
            t0, c0 = time.perf_counter(), time.thread_time()
            for a, b in zip(gray[:-1], gray[1:], strict=True):
                algo.calc(a, b, None)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
        result[f"{name}_ms_per_window"] = {"wall": round(1000 * float(np.median(wall)), 3),
                                           "thread_cpu": round(1000 * float(np.median(cpu)), 3)}
    return result
