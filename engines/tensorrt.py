"""TensorRT engine backend (NVIDIA GPU): build plans from ONNX and run them with pycuda buffers.

Written against the TensorRT >= 10 Python API (OnnxParser, BuilderConfig, optimization
profiles, build_serialized_network, execute_async_v3 with tensor addresses) and pycuda's
driver API. tensorrt and pycuda are imported inside functions only: importing this module
on a CPU machine costs nothing, and every entry point fails with the one-line GPU message.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engines.capabilities import GPU_NEEDED, GpuUnavailableError
from stream.core.errors import BundleError


def import_gpu_stack():
    """(tensorrt, pycuda.driver) or GpuUnavailableError naming what is missing."""
    missing = []
    try:
        import tensorrt as trt
    except Exception as exc:  # ImportError, or OSError from a missing libnvinfer
        trt = None
        missing.append(f"tensorrt ({type(exc).__name__})")
    try:
        import pycuda.driver as cuda

        cuda.init()
        if cuda.Device.count() < 1:
            missing.append("CUDA device (driver reports 0)")
    except Exception as exc:
        cuda = None
        missing.append(f"pycuda/CUDA driver ({type(exc).__name__})")
    if missing:
        raise GpuUnavailableError(f"TensorRT {GPU_NEEDED} (missing: {', '.join(missing)})")
    return trt, cuda


def _logger(trt):
    return trt.Logger(trt.Logger.WARNING)


class _DeviceContext:
    """The device's primary CUDA context, shared with TensorRT's runtime API calls (and OpenCV's)."""

    def __init__(self, cuda, device: int):
        self._cuda = cuda
        self.device = cuda.Device(device)
        self._ctx = self.device.retain_primary_context()

    def __enter__(self):
        self._ctx.push()
        return self

    def __exit__(self, *exc):
        self._cuda.Context.pop()

    def release(self):
        self._ctx.detach()


def build_plan(onnx_bytes: bytes, *, name: str, shape_chw: tuple[int, int, int], max_batch: int, precision: str,
               workspace_mb: int, timing_cache: Path | None = None, calibrator=None, opt_batch: int | None = None,
               device: int = 0) -> bytes:
    """Parse ONNX bytes and build a serialized plan with one profile covering batch 1..max_batch.

    The bytes (not a path) are parsed so that the hash recorded in the plan key is the hash of
    exactly what was compiled.
    """
    from engines.plans import profile_shapes

    trt, cuda = import_gpu_stack()
    ctx = _DeviceContext(cuda, device)
    try:
        with ctx:
            logger = _logger(trt)
            builder = trt.Builder(logger)
            network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
            parser = trt.OnnxParser(network, logger)
            if not parser.parse(onnx_bytes):
                errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise BundleError(f"{name}: TensorRT cannot parse the ONNX model: {errors[:400]}")
            if network.num_inputs != 1 or network.num_outputs != 1:
                raise BundleError(f"{name}: expected one input and one output, found {network.num_inputs} "
                                  f"and {network.num_outputs}")
            tensor = network.get_input(0)
            dims = tuple(tensor.shape)
            if tuple(dims[1:]) != tuple(shape_chw):
                expected = ", ".join(map(str, shape_chw))
                raise BundleError(f"{name}: ONNX input is {dims}, bundle.toml says (batch, {expected})")
            if dims[0] != -1 and dims[0] < max_batch:
                raise BundleError(f"{name}: ONNX batch dimension is fixed at {dims[0]}; export with a dynamic batch")

            config = builder.create_builder_config()
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
            lo, opt, hi = profile_shapes(shape_chw, max_batch, opt_batch)
            profile = builder.create_optimization_profile()
            profile.set_shape(tensor.name, lo, opt, hi)
            config.add_optimization_profile(profile)
            if precision in ("fp16", "int8"):
                config.set_flag(trt.BuilderFlag.FP16)  # INT8 builds fall back to FP16 where INT8 is slower
            if precision == "int8":
                if calibrator is None:
                    raise ValueError("int8 needs a calibrator")
                config.set_flag(trt.BuilderFlag.INT8)
                config.int8_calibrator = calibrator
                config.set_calibration_profile(profile)

            cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
            cache = config.create_timing_cache(cache_bytes)
            config.set_timing_cache(cache, ignore_mismatch=False)

            plan = builder.build_serialized_network(network, config)
            if plan is None:
                raise BundleError(f"{name}: TensorRT failed to build a {precision} plan (see the log above)")
            if timing_cache is not None:
                timing_cache.parent.mkdir(parents=True, exist_ok=True)
                timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
            return bytes(plan)
    finally:
        ctx.release()


class TensorRTEngine:
    """A deserialized TensorRT plan: one (B, C, H, W) input, one (B, classes) output.

    Host (page-locked) and device buffers are allocated once for the profile's max batch;
    run() copies in, executes and copies out asynchronously on one CUDA stream and waits
    once. Larger batches are split into max-batch chunks.
    """

    backend = "tensorrt"

    def __init__(self, plan_path: str | Path, *, device: int = 0):
        trt, cuda = import_gpu_stack()
        self._cuda = cuda
        self.path = Path(plan_path)
        self._devctx = _DeviceContext(cuda, device)
        self._engine = None
        try:
            self._load(trt, cuda)
        except BaseException:
            self._devctx.release()
            raise

    def _load(self, trt, cuda) -> None:
        with self._devctx:
            self._runtime = trt.Runtime(_logger(trt))
            if hasattr(self._runtime, "engine_host_code_allowed"):
                self._runtime.engine_host_code_allowed = False  # plans come from untrusted bundles
            self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self._engine is None:
                raise BundleError(f"{self.path}: TensorRT could not deserialize this plan (wrong GPU or version?)")
            names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
            inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
            if len(inputs) != 1 or len(outputs) != 1:
                raise BundleError(f"{self.path}: expected one input and one output, found {inputs} and {outputs}")
            self._input, self._output = inputs[0], outputs[0]
            in_shape = tuple(self._engine.get_tensor_shape(self._input))
            out_shape = tuple(self._engine.get_tensor_shape(self._output))
            if len(in_shape) != 4 or any(d < 1 for d in in_shape[1:]) or len(out_shape) != 2 or out_shape[1] < 1:
                raise BundleError(f"{self.path}: tensors are {in_shape} -> {out_shape}, "
                                  f"expected (B,C,H,W) -> (B,classes)")
            _lo, _opt, hi = self._engine.get_tensor_profile_shape(self._input, 0)
            self.input_shape = tuple(int(d) for d in in_shape[1:])
            self.input_dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(self._input)))
            self.num_outputs = int(out_shape[1])
            self.max_batch = int(hi[0])
            out_dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(self._output)))

            self._context = self._engine.create_execution_context()
            self._stream = cuda.Stream()
            self._host_in = cuda.pagelocked_empty((self.max_batch, *self.input_shape), self.input_dtype)
            self._host_out = cuda.pagelocked_empty((self.max_batch, self.num_outputs), out_dtype)
            self._dev_in = cuda.mem_alloc(self._host_in.nbytes)
            self._dev_out = cuda.mem_alloc(self._host_out.nbytes)
            # Addresses never change: the buffers are sized for the max batch and reused.
            self._context.set_tensor_address(self._input, int(self._dev_in))
            self._context.set_tensor_address(self._output, int(self._dev_out))

    def run(self, batch: np.ndarray) -> np.ndarray:
        if batch.ndim != 4 or batch.shape[1:] != self.input_shape:
            raise ValueError(f"{self.path.name}: input {batch.shape[1:]} does not match {self.input_shape}")
        if len(batch) > self.max_batch:
            return np.concatenate([self.run(batch[i:i + self.max_batch]) for i in range(0, len(batch), self.max_batch)])
        n = len(batch)
        with self._devctx:
            np.copyto(self._host_in[:n], batch, casting="same_kind")
            if not self._context.set_input_shape(self._input, (n, *self.input_shape)):
                raise ValueError(f"{self.path.name}: batch {n} is outside the plan's profile 1..{self.max_batch}")
            got = tuple(self._context.get_tensor_shape(self._output))
            if got != (n, self.num_outputs):
                raise BundleError(f"{self.path.name}: output shape {got}, expected {(n, self.num_outputs)}")
            cuda = self._cuda
            cuda.memcpy_htod_async(self._dev_in, self._host_in[:n], self._stream)
            if not self._context.execute_async_v3(self._stream.handle):
                raise RuntimeError(f"{self.path.name}: TensorRT execution failed")
            cuda.memcpy_dtoh_async(self._host_out[:n], self._dev_out, self._stream)
            self._stream.synchronize()
            return self._host_out[:n].astype(np.float32, copy=True)

    def close(self) -> None:
        """Free device memory before the context goes away (order matters for the CUDA driver)."""
        if getattr(self, "_engine", None) is None:
            return
        with self._devctx:
            self._dev_in.free()
            self._dev_out.free()
            del self._context, self._engine, self._runtime
            self._engine = None
        self._devctx.release()
