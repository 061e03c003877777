"""Bookkeeping shared by every sub-report: measurements (samples + median), ratios that point at two
recorded measurements, the machine description, CPU accounting from /proc, looped test videos.

A ratio is never typed in: Report.ratio() looks up two measurements recorded earlier in the same
invocation and divides their medians, and the JSON keeps both paths and both values so anyone
(and tests/test_bench.py) can check value == numerator / denominator.
"""
from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def median(values) -> float:
    return float(statistics.median(values))


def time_call(fn, *, repeats: int, warmup: int = 1, inner: int = 1, clock=time.perf_counter) -> list[float]:
    """Milliseconds per call of fn() (each sample = mean over `inner` calls), after `warmup` calls.

    clock: time.perf_counter (wall) or time.thread_time (CPU time of this thread: the work itself, without
    the time other processes held the core; used for single-threaded stage costs)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = clock()
        for _ in range(inner):
            fn()
        samples.append((clock() - t0) * 1000.0 / inner)
    return samples


def interleaved(fns: dict, *, repeats: int, warmup: int = 1, inner: int = 1,
                clock=time.perf_counter) -> dict[str, list[float]]:
    """Time several callables alternately (a, b, a, b, ...) so machine-load drift hits all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            t0 = clock()
            for _ in range(inner):
                fn()
            out[key].append((clock() - t0) * 1000.0 / inner)
    return out


class Report:
    """The nested result document. Measurements live under `reports/...`; ratios refer to them by path."""

    def __init__(self):
        self.doc: dict = {"schema": "twostream-bench-1", "machine": {}, "config": {}, "reports": {}, "ratios": [],
                          "targets": [], "notes": []}

    # paths are "reports/<report>/<key>/<key>..." --------------------------------------------------
    def _parent(self, path: str, create: bool) -> tuple[dict, str]:
        parts = path.split("/")
        node = self.doc
        for p in parts[:-1]:
            if p not in node:
                if not create:
                    raise KeyError(path)
                node[p] = {}
            node = node[p]
        return node, parts[-1]

    def get(self, path: str):
        node, key = self._parent(path, create=False)
        return node[key]

    def put(self, path: str, value) -> None:
        node, key = self._parent(path, create=True)
        node[key] = value

    def measure(self, path: str, samples, unit: str, **extra) -> dict:
        """Record a measurement: every sample and their median (the value ratios and tables use)."""
        samples = [float(s) for s in samples]
        if not samples:
            raise ValueError(f"{path}: no samples")
        m = {"median": median(samples), "samples": samples, "unit": unit, **extra}
        self.put(path, m)
        return m

    def derived(self, path: str, value: float, unit: str, formula: str, inputs: dict) -> dict:
        """A value computed from recorded measurements (e.g. the stage-cost bound); inputs name their paths."""
        m = {"value": float(value), "unit": unit, "formula": formula, "inputs": inputs}
        self.put(path, m)
        return m

    def value(self, path: str) -> float:
        m = self.get(path)
        return float(m["median"] if "median" in m else m["value"])

    def ratio(self, name: str, numerator: str, denominator: str, meaning: str) -> dict | None:
        """value = numerator / denominator of two measurements recorded in this invocation."""
        try:
            num, den = self.value(numerator), self.value(denominator)
        except KeyError:
            self.note(f"ratio {name}: not computed ({numerator} or {denominator} was not measured in this run)")
            return None
        if den == 0:
            self.note(f"ratio {name}: denominator {denominator} is 0")
            return None
        r = {"name": name, "value": num / den, "numerator": numerator, "denominator": denominator,
             "numerator_value": num, "denominator_value": den, "meaning": meaning}
        self.doc["ratios"].append(r)
        return r

    def find_ratio(self, name: str) -> dict | None:
        return next((r for r in self.doc["ratios"] if r["name"] == name), None)

    def target(self, name: str, met: bool | None, detail: str) -> None:
        self.doc["targets"].append({"target": name, "met": met, "detail": detail})

    def note(self, text: str) -> None:
        self.doc["notes"].append(text)


# machine -----------------------------------------------------------------------------------------
def _cmd(args: list[str]) -> str:
    if shutil.which(args[0]) is None:
        return ""
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info() -> dict:
    cpu_model = ""
    for line in _cmd(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            cpu_model = line.split(":", 1)[1].strip()
    mem = ""
    for line in _cmd(["free", "-m"]).splitlines():
        if line.startswith("Mem:"):
            mem = f"{line.split()[1]} MiB"
    versions = {"python": platform.python_version()}
    for mod in ("numpy", "cv2", "onnxruntime", "zmq", "torch"):
        try:
            m = __import__(mod) if mod != "torch" else _torch_or_none()
            if m is not None:
                versions[mod] = getattr(m, "__version__", "?")
        except ImportError:
            pass
    return {"cores": os.cpu_count(), "affinity_cores": len(os.sched_getaffinity(0)), "cpu": cpu_model, "memory": mem,
            "kernel": platform.release(), "load_start": list(os.getloadavg()), "versions": versions}


def _torch_or_none():
    """torch only if it is already imported (machine_info must not pull it in)."""
    import sys

    return sys.modules.get("torch")


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


# CPU accounting ----------------------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process (all its threads) from /proc/<pid>/stat; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = data.rsplit(")", 1)[1].split()  # after "(comm)": state is fields[0]; utime is field 14 overall
    return (int(fields[11]) + int(fields[12])) / _TICK


def children_of(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine (all processes, ours and others') from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            parts = f.readline().split()[1:]
    except OSError:
        return float("nan")
    vals = [int(x) for x in parts]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return (sum(vals[:8]) - idle) / _TICK


@dataclass
class CpuSampler:
    """Samples the CPU time of this process's descendants while a run goes on (a thread calls sample())."""

    label_of: object = None  # callable pid -> label or None
    first: dict = field(default_factory=dict)
    last: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)

    def sample(self) -> None:
        stack = children_of(os.getpid())
        seen = set()
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            stack += children_of(pid)
            cpu = proc_cpu_seconds(pid)
            if cpu is None:
                continue
            self.first.setdefault(pid, 0.0)  # processes start during the run: count from 0
            self.last[pid] = cpu
            if pid not in self.labels and self.label_of is not None:
                label = self.label_of(pid)
                if label:
                    self.labels[pid] = label

    def by_label(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, cpu in self.last.items():
            label = self.labels.get(pid, "other")
            out[label] = out.get(label, 0.0) + cpu - self.first[pid]
        return out


# misc --------------------------------------------------------------------------------------------
def video_frame_count(path: str | Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def looped_video(path: str | Path, copies: int, out_dir: str | Path) -> Path:
    """The clip repeated `copies` times (ffmpeg stream copy: same codec, same decode cost), else the clip itself."""
    path = Path(path)
    if copies <= 1 or shutil.which("ffmpeg") is None:
        return path
    out = Path(out_dir) / f"{path.stem}_x{copies}{path.suffix}"
    if not out.exists():
        r = subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", str(copies - 1), "-i", str(path), "-an",
                            "-c", "copy", str(out)], capture_output=True, text=True, timeout=120)
        if r.returncode != 0 or not out.exists():
            return path
    return out


# Real footage re-encoded the way cameras send it: H.264, 320x240, 25 fps, > 20 s. MPEG-4 part 2 (the
# 6.5 s mmaction2_test.avi the bench used before) decodes at ~0.10 ms/frame here, this H.264 at ~0.23.
CAPACITY_CLIPS = ("replay/mmaction2_test.avi", "replay/fun_theory.mp4", "replay/mmaction2_demo.mp4",
                  "k400tiny2/doing_exercises/doing_exercises10.mp4")


def h264_capacity_video(data: Path, out_dir: str | Path) -> Path | None:
    """CAPACITY_CLIPS scaled to 320x240, resampled to 25 fps, concatenated and encoded with libx264 (Debian
    ffmpeg): ~52 s of real footage. None when ffmpeg, libx264 or a clip is missing."""
    clips = [Path(data) / c for c in CAPACITY_CLIPS]
    if shutil.which("ffmpeg") is None or not all(c.is_file() for c in clips):
        return None
    out = Path(out_dir) / "capacity_h264_320x240_25fps.mp4"
    if out.exists():
        return out
    chains = "".join(f"[{i}:v]scale=320:240,setsar=1,fps=25[v{i}];" for i in range(len(clips)))
    graph = chains + "".join(f"[v{i}]" for i in range(len(clips))) + f"concat=n={len(clips)}:v=1:a=0[out]"
    cmd = ["ffmpeg", "-v", "error", "-y"]
    for c in clips:
        cmd += ["-i", str(c)]
    part = out.with_suffix(".part.mp4")  # renamed when complete: an interrupted encode is never reused
    cmd += ["-filter_complex", graph, "-map", "[out]", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "50", str(part)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0 or not part.exists():
        return None
    part.replace(out)
    return out


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


def two_stream(bundle) -> bool:
    """The classic two-stream layout (networks spatial [frame] and temporal [flow_stack], late fusion): what the
    baselines, flow-quality and the torch-eager checkpoints path are defined for. Other families get the
    per-network reports and `skipped: <reason>` where a sub-report only makes sense for two streams."""
    kinds = [(n.name, tuple(s.kind for s in n.inputs)) for n in bundle.networks]
    return kinds == [("spatial", ("frame",)), ("temporal", ("flow_stack",))] and bundle.fusion.method == "late"


def describe_bundle(bundle) -> str:
    """'family i3d, networks i3d[clip(T=8, stride=1)]': for skip reasons and logs."""
    nets = ", ".join(f"{n.name}[{' + '.join(s.describe() for s in n.inputs)}]" for n in bundle.networks)
    return f"family {bundle.family}, networks {nets}"


@dataclass
class BenchContext:
    """What every sub-report needs: the bundle, the inputs, the mode, and results shared between reports."""

    model: Path
    video: Path  # stages, throughput, baselines
    capacity_video: Path  # realtime capacity (320x240 25 fps replay by default)
    quality_data: Path | None  # labelled folder-per-class dataset for flow quality
    quality_model: Path | None  # bundle scored by flow-quality (None: `model`)
    quick: bool
    repeats: int
    threads: int  # ONNX Runtime intra-op threads (as [engine] threads)
    max_sources: int
    tmp: Path
    report: Report
    log: object = print
    cache: dict = field(default_factory=dict)
    min_sources: int = 1  # capacity: first level above 1
    capacity_seconds: float = 24.0  # capacity: video seconds per source and level

    @property
    def bundle(self):
        if "bundle" not in self.cache:
            from engines.bundle import read_bundle

            self.cache["bundle"] = read_bundle(self.model)
        return self.cache["bundle"]

    def frames(self, max_frames: int = 0) -> np.ndarray:
        """The bench video decoded at the model size (RGB), as the runtime sees it."""
        key = ("frames", max_frames)
        if key not in self.cache:
            from stream.core.offline import read_video

            self.cache[key] = read_video(self.video, self.bundle.input_size, max_frames=max_frames)
        return self.cache[key]
