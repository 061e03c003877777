"""Clip (video) accuracy of a format-2 bundle on an extraction, through its ONNX graphs (ONNX Runtime, CPU).

Scoring as `twostream eval`: 25 evenly spaced windows per video (the first one ends once the
largest input's history exists), softmax per network and window, averaged over the windows;
the fused score is the bundle's late weighted average of the networks' probabilities, or the
single network's. `window_accuracy` scores every window on its own (argmax of its fused
probabilities): clip accuracy saturates on weizmann4, single windows do not. Inputs are built
from the extraction's frames and DIS flow exactly as the runtime builds them (train.families.data.window_arrays).
"""
from __future__ import annotations

import time
import tomllib
from pathlib import Path

import numpy as np

from train.families.data import history, window_arrays


def read_networks(bundle: str | Path) -> dict:
    """The parts of a format-2 bundle.toml the evaluator needs (the runtime validates it with engines.bundle)."""
    doc = tomllib.loads((Path(bundle) / "bundle.toml").read_text(encoding="utf-8"))
    model = doc["model"]
    text = (Path(bundle) / model.get("labels", "labels.txt")).read_text()
    labels = [x.strip() for x in text.splitlines() if x.strip()]
    flow = doc.get("flow", {})
    nets = []
    for n in doc["networks"]:
        params = {"flow_length": int(flow.get("length", 10)), "clip_length": int(n.get("clip_length", 8)),
                  "clip_stride": int(n.get("clip_stride", 1)), "stack_length": int(n.get("stack_length", 10))}
        nets.append({"name": n["name"], "file": Path(bundle) / n["file"], "inputs": list(n["inputs"]),
                     "params": params})
    fusion = doc.get("fusion", {})
    return {"labels": labels, "mean": model.get("mean", [127.0] * 3), "std": model.get("std", [128.0] * 3),
            "size": int(model["input_size"]), "networks": nets, "fusion": fusion, "family": model.get("family", "late")}


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def evaluate(bundle: str | Path, extracted: str | Path, index: dict, rels: list[str], labels_of: dict[str, int],
             windows: int = 25, threads: int = 1) -> dict:
    """{"videos", "accuracy": {network..., "fused"}, "per_video": [...], "ms_per_window": {network: ms}}."""
    import onnxruntime as ort

    from stream.core.offline import window_ends
    from train.extract import load_video

    b = read_networks(bundle)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sessions = {n["name"]: ort.InferenceSession(str(n["file"]), sess_options=opts, providers=["CPUExecutionProvider"])
                for n in b["networks"]}
    needs_flow = any("flow_stack" in n["inputs"] for n in b["networks"])
    all_kinds = sorted({k for n in b["networks"] for k in n["inputs"]})
    need = max(history(n["inputs"], **n["params"]) for n in b["networks"])
    fusion = b["fusion"]
    correct = {n["name"]: 0 for n in b["networks"]} | {"fused": 0}
    window_correct = {n["name"]: 0 for n in b["networks"]} | {"fused": 0}
    window_count = 0
    timing = {n["name"]: [0.0, 0] for n in b["networks"]}
    per_video = []
    for rel in rels:
        frames, flows = load_video(extracted, index["videos"][rel], frames=True, flows=needs_flow)
        ends = window_ends(len(frames), min(need - 1, len(frames) - 1), windows)
        probs, per_window = {}, {}
        for n in b["networks"]:
            arrays = [window_arrays(frames, flows, e, n["inputs"], mean=b["mean"], std=b["std"],
                                    stacking=index["flow"]["stacking"], **n["params"]) for e in ends]
            feed = {k: np.stack([a[k] for a in arrays]) for k in n["inputs"]}
            t0 = time.perf_counter()
            logits = np.concatenate([sessions[n["name"]].run(None, {k: v[i:i + 1] for k, v in feed.items()})[0]
                                     for i in range(len(ends))])
            timing[n["name"]][0] += time.perf_counter() - t0
            timing[n["name"]][1] += len(ends)
            per_window[n["name"]] = _softmax(logits)
            probs[n["name"]] = per_window[n["name"]].mean(axis=0)
        y = labels_of[rel]
        if fusion.get("method") == "single":
            fused = probs[fusion["network"]]
            fused_windows = per_window[fusion["network"]]
        else:
            w = fusion.get("weights", {})
            total = sum(float(w.get(k, 1.0)) for k in probs)
            fused = sum(float(w.get(k, 1.0)) * p for k, p in probs.items()) / total
            fused_windows = sum(float(w.get(k, 1.0)) * p for k, p in per_window.items()) / total
        for k, p in per_window.items():
            window_correct[k] += int((p.argmax(axis=1) == y).sum())
        window_correct["fused"] += int((fused_windows.argmax(axis=1) == y).sum())
        window_count += len(ends)
        row = {"video": rel, "label": b["labels"][y], "fused": b["labels"][int(np.argmax(fused))],
               "fused_windows": [int(i) for i in fused_windows.argmax(axis=1)]}  # label index per window
        for k, p in probs.items():
            correct[k] += int(np.argmax(p) == y)
            row[k] = b["labels"][int(np.argmax(p))]
        correct["fused"] += int(np.argmax(fused) == y)
        per_video.append(row)
    n = max(1, len(rels))
    return {"bundle": str(bundle), "family": b["family"], "videos": len(rels), "windows_per_video": windows,
            "accuracy": {k: round(v / n, 4) for k, v in correct.items()}, "kinds": all_kinds,
            "window_accuracy": {k: round(v / max(1, window_count), 4) for k, v in window_correct.items()},
            "windows": window_count,
            "ms_per_window_batch1": {k: round(1000 * t / max(1, c), 3) for k, (t, c) in timing.items()},
            "per_video": per_video}
