"""What this machine can run: ONNX Runtime providers, TensorRT, pycuda, CUDA devices, OpenCV CUDA flow.

Detection never raises: a missing piece is recorded with the reason, so `twostream doctor`
works on a CPU-only box and `choose_engine` can explain its pick. Heavy GPU packages are
imported only here and only inside functions.
"""
from __future__ import annotations

import functools
import importlib
import shutil
import subprocess
from dataclasses import asdict, dataclass, field

from stream.core.errors import GPU_NEEDED, ConfigError

MIN_TENSORRT_MAJOR = 10  # execute_async_v3 + set_tensor_address + create_network(0)


class GpuUnavailableError(ConfigError):
    """The TensorRT/CUDA stack is not usable here; the message says what is missing."""


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    compute_capability: str  # "8.6"
    memory_mib: int = 0


@dataclass(frozen=True)
class Capabilities:
    ort_providers: tuple[str, ...] = ()
    tensorrt_version: str = ""  # "" when not importable
    tensorrt_problem: str = ""
    pycuda_version: str = ""
    pycuda_problem: str = ""
    gpus: tuple[GpuInfo, ...] = ()
    gpu_problem: str = ""
    opencv_version: str = ""
    opencv_cuda_devices: int = 0
    opencv_cuda_flow: tuple[str, ...] = ()  # CUDA flow backends OpenCV offers here: farneback, tvl1, nvof
    cpu_flow_backends: tuple[str, ...] = field(default_factory=tuple)

    @property
    def tensorrt_ready(self) -> bool:
        return bool(self.tensorrt_version and self.pycuda_version and self.gpus)

    @property
    def ort_cuda(self) -> bool:
        return "CUDAExecutionProvider" in self.ort_providers

    def missing_for_tensorrt(self) -> str:
        """Human list of what stops TensorRT here ("" when nothing does)."""
        missing = []
        if not self.tensorrt_version:
            missing.append(f"tensorrt: {self.tensorrt_problem or 'not installed'}")
        if not self.pycuda_version:
            missing.append(f"pycuda: {self.pycuda_problem or 'not installed'}")
        if not self.gpus:
            missing.append(f"CUDA device: {self.gpu_problem or 'none found'}")
        return "; ".join(missing)

    def as_dict(self) -> dict:
        doc = asdict(self)
        doc["tensorrt_ready"] = self.tensorrt_ready
        return doc


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def _import(name: str):
    try:
        return importlib.import_module(name), ""
    except ImportError:
        return None, "not installed"
    except Exception as exc:  # a broken install (missing libnvinfer, driver mismatch) raises anything
        return None, _short(exc)


def _gpus_from_pycuda(cuda) -> tuple[tuple[GpuInfo, ...], str]:
    try:
        cuda.init()
        gpus = []
        for i in range(cuda.Device.count()):
            dev = cuda.Device(i)
            major, minor = dev.compute_capability()
            gpus.append(GpuInfo(i, dev.name(), f"{major}.{minor}", int(dev.total_memory()) >> 20))
        return tuple(gpus), "" if gpus else "driver reports 0 devices"
    except Exception as exc:
        return (), _short(exc)


def _gpus_from_nvidia_smi() -> tuple[tuple[GpuInfo, ...], str]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return (), "no NVIDIA driver (nvidia-smi not found)"
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name,compute_cap,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return (), f"nvidia-smi failed ({_short(exc)})"
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4 and parts[0].isdigit():
            gpus.append(GpuInfo(int(parts[0]), parts[1], parts[2], int(float(parts[3] or 0))))
    return tuple(gpus), "" if gpus else "nvidia-smi lists no GPU"


def _opencv_cuda() -> tuple[str, int, tuple[str, ...]]:
    import cv2

    try:
        count = int(cv2.cuda.getCudaEnabledDeviceCount())
    except Exception:
        count = 0
    from stream.core.flow_cuda import opencv_cuda_flow_classes

    return cv2.__version__, count, tuple(opencv_cuda_flow_classes()) if count > 0 else ()


@functools.lru_cache(maxsize=1)
def detect_capabilities() -> Capabilities:
    """Probe the machine once per process (imports tensorrt/pycuda only if installed)."""
    try:
        import onnxruntime as ort

        providers = tuple(ort.get_available_providers())
    except Exception:
        providers = ()

    trt, trt_problem = _import("tensorrt")
    trt_version = str(getattr(trt, "__version__", "")) if trt else ""
    if trt_version and int(trt_version.split(".")[0]) < MIN_TENSORRT_MAJOR:
        trt_problem = f"version {trt_version} is too old (need >= {MIN_TENSORRT_MAJOR})"
        trt_version = ""

    cuda, cuda_problem = _import("pycuda.driver")
    pycuda_version = ""
    if cuda is not None:
        import pycuda

        pycuda_version = str(getattr(pycuda, "VERSION_TEXT", "") or "installed")
        gpus, gpu_problem = _gpus_from_pycuda(cuda)
    else:
        gpus, gpu_problem = _gpus_from_nvidia_smi()

    cv_version, cv_devices, cv_flows = _opencv_cuda()
    from stream.core.flow import BACKENDS

    return Capabilities(
        ort_providers=providers,
        tensorrt_version=trt_version,
        tensorrt_problem=trt_problem,
        pycuda_version=pycuda_version,
        pycuda_problem=cuda_problem,
        gpus=gpus,
        gpu_problem=gpu_problem,
        opencv_version=cv_version,
        opencv_cuda_devices=cv_devices,
        opencv_cuda_flow=cv_flows,
        cpu_flow_backends=BACKENDS,
    )


def require_tensorrt(caps: Capabilities, what: str) -> None:
    """Raise the one-line GPU message (with what is missing) unless TensorRT can run here."""
    if not caps.tensorrt_ready:
        raise GpuUnavailableError(f"{what} {GPU_NEEDED} (missing: {caps.missing_for_tensorrt()})")


def choose_engine(requested: str, caps: Capabilities, plan_usable: bool | None) -> tuple[str, str]:
    """Pick the engine backend. Returns (kind, reason); kind is tensorrt, onnxruntime-cuda or onnxruntime-cpu.

    plan_usable: True when a TensorRT plan for this GPU/TensorRT/ONNX file exists and passed
    its checks, False when there is none (or it is stale/foreign), None when not checked.
    """
    if requested == "tensorrt":
        require_tensorrt(caps, "engine = 'tensorrt'")
        if plan_usable is False:
            raise ConfigError(
                "engine = 'tensorrt': no usable TensorRT plan for this GPU and bundle; "
                "run `twostream build-engines BUNDLE` first"
            )
        return "tensorrt", "requested tensorrt"
    if requested == "onnxruntime":
        if caps.ort_cuda:
            return "onnxruntime-cuda", "requested onnxruntime; CUDA execution provider available"
        return "onnxruntime-cpu", "requested onnxruntime; no CUDA execution provider"
    if requested != "auto":
        raise ConfigError(f"engine = {requested!r}: expected one of auto, onnxruntime, tensorrt")

    if caps.tensorrt_ready and plan_usable:
        return "tensorrt", "auto: TensorRT plan present and usable"
    if caps.tensorrt_ready:
        why = "no TensorRT plan built for this GPU (twostream build-engines)" if plan_usable is False else \
            "TensorRT plan not checked"
    else:
        why = f"TensorRT unavailable ({caps.missing_for_tensorrt()})"
    if caps.ort_cuda:
        return "onnxruntime-cuda", f"auto: {why}; ONNX Runtime CUDA provider present"
    return "onnxruntime-cpu", f"auto: {why}; no ONNX Runtime CUDA provider"
