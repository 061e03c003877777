"""CUDA optical flow through OpenCV's cv2.cuda module (needs an OpenCV build with CUDA).

Backends: `farneback` and `tvl1` are the CUDA versions of the CPU algorithms in stream.core.flow;
`nvof` is NVIDIA's hardware optical flow (NvidiaOpticalFlow_2_0, Turing and newer), a
different algorithm. A network trained on one algorithm's flow loses accuracy silently on
another's, so `check_flow_algorithm` refuses a backend that differs from the bundle's
flow.backend unless the caller opts in (allow_other_algorithm=True).

Output is the same as stream.core.flow.FlowComputer: float32 (H, W, 2) pixels, x then y, which
the caller quantises with stream.core.flow.quantize_flow, so the temporal network sees the same
uint8 encoding whichever device computed the flow. Frames stay in a small ring of GpuMats
(each upload reuses its buffer, the previous frame is never uploaded twice); the flow is
downloaded once per frame because the pipeline's flow ring is host shared memory read by
another process.
"""
from __future__ import annotations

import cv2
import numpy as np

from stream.core.errors import GPU_NEEDED, ConfigError
from stream.core.flow import subtract_camera_motion

CUDA_FLOW_BACKENDS = ("farneback", "tvl1", "nvof")
# Which CPU algorithm (stream.core.flow.BACKENDS) each CUDA backend implements; None: no CPU twin.
CPU_TWIN = {"farneback": "farneback", "tvl1": "tvl1", "nvof": None}

# OpenCV's Python names moved between versions; try both spellings.
_FACTORIES = {
    "farneback": (("cuda", "FarnebackOpticalFlow_create"), ("cuda_FarnebackOpticalFlow", "create")),
    "tvl1": (("cuda", "OpticalFlowDual_TVL1_create"), ("cuda_OpticalFlowDual_TVL1", "create")),
    "nvof": (("cuda", "NvidiaOpticalFlow_2_0_create"), ("cuda_NvidiaOpticalFlow_2_0", "create")),
}


def _factory(backend: str):
    for owner_name, attr in _FACTORIES[backend]:
        owner = getattr(cv2, owner_name, None)
        fn = getattr(owner, attr, None) if owner is not None else None
        if fn is not None:
            return fn
    return None


def opencv_cuda_flow_classes() -> list[str]:
    """CUDA flow backends whose classes this OpenCV build exposes (regardless of a device being present)."""
    return [b for b in CUDA_FLOW_BACKENDS if _factory(b) is not None]


def cuda_device_count() -> int:
    try:
        return int(cv2.cuda.getCudaEnabledDeviceCount())
    except Exception:  # OpenCV without the cuda module
        return 0


def check_flow_algorithm(bundle_backend: str, cuda_backend: str, *, allow_other_algorithm: bool = False) -> None:
    """Refuse a CUDA flow backend whose algorithm differs from the one the bundle was trained with."""
    if cuda_backend not in CUDA_FLOW_BACKENDS:
        raise ConfigError(f"CUDA flow backend {cuda_backend!r}: expected one of {', '.join(CUDA_FLOW_BACKENDS)}")
    twin = CPU_TWIN[cuda_backend]
    if twin == bundle_backend or allow_other_algorithm:
        return
    if bundle_backend == "dis":
        hint = "DIS has no CUDA version in OpenCV; keep CPU flow or retrain the bundle on farneback/tvl1 flow"
    else:
        hint = f"use CUDA flow backend {bundle_backend!r}"
    raise ConfigError(
        f"CUDA flow backend {cuda_backend!r} computes {twin or 'NVIDIA hardware'} flow but the bundle was trained on "
        f"{bundle_backend!r} flow; a different flow algorithm silently costs accuracy ({hint}, or opt in explicitly "
        f"to accept it)"
    )


class CudaFlowComputer:
    """Flow between consecutive grayscale frames on the GPU; feed frames in order with push()."""

    def __init__(self, backend: str, size: int, *, bundle_backend: str, allow_other_algorithm: bool = False,
                 ring: int = 2, subtract: str = "none"):
        check_flow_algorithm(bundle_backend, backend, allow_other_algorithm=allow_other_algorithm)
        if cuda_device_count() <= 0:
            raise ConfigError(f"CUDA flow backend {backend!r} {GPU_NEEDED} and an OpenCV build with CUDA "
                              f"(cv2.cuda.getCudaEnabledDeviceCount() is 0)")
        factory = _factory(backend)
        if factory is None:
            raise ConfigError(f"CUDA flow backend {backend!r}: this OpenCV build has no such class "
                              f"(available: {', '.join(opencv_cuda_flow_classes()) or 'none'})")
        self.backend = backend
        self.size = size
        self.subtract = subtract  # bundle [flow] subtract: the same camera-motion removal as the CPU computer
        self._stream = cv2.cuda.Stream()
        self._frames = [cv2.cuda.GpuMat(size, size, cv2.CV_8UC1) for _ in range(max(2, ring))]
        self._flow = cv2.cuda.GpuMat(size, size, cv2.CV_32FC2)
        self._count = 0
        self._grid = 1
        if backend == "farneback":
            # Same parameters as the CPU call in stream.core.flow.FlowComputer (levels 3, scale 0.5, window 15,
            # 3 iterations, poly_n 5, sigma 1.2): the same algorithm and settings, a different implementation.
            self._algo = factory(3, 0.5, False, 15, 3, 5, 1.2, 0)
        elif backend == "tvl1":
            # OpenCV's CUDA defaults, which are NOT the CPU ones: 300 iterations and no median filtering here,
            # 10 outer x 30 inner iterations with a 5x5 median filter on the CPU (docs/gpu.md).
            self._algo = factory()
        else:
            self._algo, self._grid = self._make_nvof(factory, size)

    @staticmethod
    def _make_nvof(factory, size: int):
        # Grid 1 (a vector per pixel) needs Ampere or newer; Turing only has 4x4 output grids.
        fast = getattr(cv2, "cuda_NvidiaOpticalFlow_2_0_NV_OF_PERF_LEVEL_FAST", 20)
        for grid in (1, 4):
            try:
                return factory((size, size), fast, grid, grid, False, False, False, 0), grid
            except cv2.error:
                continue
        raise ConfigError("CUDA flow backend 'nvof': NVIDIA hardware optical flow is not supported by this GPU/driver")

    def reset(self) -> None:
        """Forget the previous frame (after a gap): the next push starts a new chain."""
        self._count = 0

    def __call__(self, prev_gray: np.ndarray | None, next_gray: np.ndarray) -> np.ndarray | None:
        """FlowComputer-style call for a caller that pushes every frame in order (prev is the last push)."""
        return self.push(next_gray)

    def push(self, gray: np.ndarray) -> np.ndarray | None:
        """Upload the next (size, size) uint8 frame; return flow from the previous frame (None for the first)."""
        if gray.shape != (self.size, self.size) or gray.dtype != np.uint8:
            raise ValueError(f"expected a ({self.size}, {self.size}) uint8 gray frame, got {gray.shape} {gray.dtype}")
        cur = self._frames[self._count % len(self._frames)]
        cur.upload(gray, self._stream)
        self._count += 1
        if self._count == 1:
            return None
        prev = self._frames[(self._count - 2) % len(self._frames)]
        if self.backend == "nvof":
            flow = self._nvof(prev, cur)
        else:
            self._flow = self._algo.calc(prev, cur, self._flow, stream=self._stream)
            flow = self._flow.download(stream=self._stream)
        self._stream.waitForCompletion()
        return subtract_camera_motion(flow, self.subtract)

    def _nvof(self, prev, cur) -> np.ndarray:
        raw, _cost = self._algo.calc(prev, cur, None, self._stream)  # S10.5 fixed point at the output grid
        self._stream.waitForCompletion()
        flow = self._algo.convertToFloat(raw, None)
        if not isinstance(flow, np.ndarray):
            flow = flow.download()
        if self._grid != 1:  # vectors are already in full-resolution pixels; only the grid is coarse
            flow = cv2.resize(flow, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        return flow
