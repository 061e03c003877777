"""INT8 calibration data: real windows from real videos, made exactly as the runtime makes them.

Batches come from stream.core.offline (decode -> resize_frame -> flow on gray frames when a network takes
flow -> quantize -> bundle_window_inputs, i.e. stream.core.inputs), the same code path the pipeline and
evaluation use, for every network of any bundle family, so the activation ranges
TensorRT measures are those of deployment inputs. The TensorRT calibrator class is created
inside make_calibrator() because its base class lives in the tensorrt package.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from engines.bundle import Bundle
from stream.core.errors import BundleError, ConfigError
from stream.core.offline import bundle_window_inputs, read_video, video_flows_if_needed, window_ends

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


def find_calibration_videos(data: str | Path, limit: int = 32) -> list[Path]:
    """Up to `limit` videos under `data` (a file or a directory), spread evenly over the sorted list.

    Spreading (rather than taking the first N) keeps every class folder represented.
    """
    data = Path(data)
    if data.is_file():
        return [data]
    if not data.is_dir():
        raise ConfigError(f"--calib {str(data)!r}: not a video file or a directory")
    videos = sorted(p for p in data.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not videos:
        raise ConfigError(f"--calib {str(data)!r}: no video files ({', '.join(VIDEO_SUFFIXES)}) found")
    if len(videos) <= limit:
        return videos
    picks = np.linspace(0, len(videos) - 1, limit).round().astype(int)
    return [videos[i] for i in sorted(set(picks.tolist()))]


def calibration_windows(videos: list[Path], bundle: Bundle, *, windows_per_video: int = 4,
                        max_frames: int = 300) -> Iterator[dict[str, list[np.ndarray]]]:
    """Yield {network: [one float32 array per input, no batch dim]} per window, windows spread over each video
    (any bundle family; flow is computed only when a network takes a flow_stack)."""
    for video in videos:
        frames = read_video(video, bundle.input_size, max_frames=max_frames)
        ends = window_ends(len(frames), bundle.span, windows_per_video)
        if not ends:
            continue  # shorter than one window
        inputs = bundle_window_inputs(bundle, frames, video_flows_if_needed(bundle, frames), ends)
        for k in range(len(ends)):
            yield {name: [x[k] for x in xs] for name, xs in inputs.items()}


def calibration_batches(videos: list[Path], bundle: Bundle, network: str, *, batch_size: int,
                        max_batches: int = 16, windows_per_video: int = 4,
                        max_frames: int = 300) -> Iterator[np.ndarray]:
    """Full (batch_size, *input shape) float32 batches for one single-input network; a trailing partial batch is
    dropped (the calibrator declares one fixed batch size: engines.plans.calibration_batch_size, the profile's
    optimum). Multi-input networks have no INT8 calibration (BundleError)."""
    if len(bundle.network(network).inputs) != 1:
        raise BundleError(f"{bundle.path}: network {network!r} has several inputs; INT8 calibration takes one")
    pending: list[np.ndarray] = []
    produced = 0
    for window in calibration_windows(videos, bundle, windows_per_video=windows_per_video, max_frames=max_frames):
        pending.append(window[network][0])
        if len(pending) == batch_size:
            yield np.ascontiguousarray(np.stack(pending), dtype=np.float32)
            pending = []
            produced += 1
            if produced >= max_batches:
                return


def calibration_cache_path(plans_dir: Path, network: str, onnx_sha256: str, videos: list[Path]) -> Path:
    """Cache file keyed by the ONNX file and the calibration video list (names and sizes)."""
    h = hashlib.sha256(onnx_sha256.encode())
    for v in videos:
        h.update(f"{v.name}:{v.stat().st_size}\n".encode())
    return plans_dir / f"calib-{network}-{onnx_sha256[:12]}-{h.hexdigest()[:12]}.cache"


def make_calibrator(batches: Iterator[np.ndarray], *, batch_size: int, shape_chw: tuple[int, int, int],
                    cache_file: Path):
    """An IInt8EntropyCalibrator2 feeding `batches` through one device buffer (needs tensorrt + pycuda)."""
    from engines.tensorrt import import_gpu_stack

    trt, cuda = import_gpu_stack()

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)  # pybind11 trampolines need the explicit base init
            self._batches = batches
            self._device = cuda.mem_alloc(batch_size * int(np.prod(shape_chw)) * 4)
            self.batches_used = 0

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names):
            batch = next(self._batches, None)
            if batch is None:
                return None  # tells TensorRT calibration data is exhausted
            if batch.shape != (batch_size, *shape_chw) or batch.dtype != np.float32:
                raise ValueError(f"calibration batch {batch.shape} {batch.dtype}, the calibrator declared "
                                 f"({batch_size}, {', '.join(map(str, shape_chw))}) float32")
            cuda.memcpy_htod(self._device, batch)
            self.batches_used += 1
            return [int(self._device)]

        def read_calibration_cache(self):
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            cache_file.write_bytes(bytes(cache))

    return EntropyCalibrator()
