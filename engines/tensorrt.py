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


def build_plan(onnx_bytes: bytes, *, name: str, shape_chw: tuple, max_batch: int, precision: str,
               workspace_mb: int, timing_cache: Path | None = None, calibrator=None, opt_batch: int | None = None,
               device: int = 0, mode=None) -> bytes:
    """Parse ONNX bytes and build a serialized plan with one profile covering batch 1..max_batch.

    shape_chw: the one input's shape without batch, or a tuple of such shapes, one per input in the
    graph's order (multi-input networks of bundle format 2; that path is UNTESTED on a GPU so far,
    and INT8 calibration is single-input only). The bytes (not a path) are parsed so that the hash
    recorded in the plan key is the hash of exactly what was compiled.
    """
    from engines.plans import profile_shapes

    shapes = [tuple(shape_chw)] if isinstance(shape_chw[0], int) else [tuple(s) for s in shape_chw]
    if len(shapes) > 1 and precision == "int8":
        raise BundleError(f"{name}: INT8 calibration of multi-input networks is not supported; use fp16 or fp32")
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
            if network.num_inputs != len(shapes) or network.num_outputs != 1:
                raise BundleError(f"{name}: expected {len(shapes)} input(s) and one output, found "
                                  f"{network.num_inputs} and {network.num_outputs}")
            config = builder.create_builder_config()
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
            profile = builder.create_optimization_profile()
            for k, shape in enumerate(shapes):
                tensor = network.get_input(k)
                dims = tuple(tensor.shape)
                if tuple(dims[1:]) != shape:
                    expected = ", ".join(map(str, shape))
                    raise BundleError(f"{name}: ONNX input {k} is {dims}, bundle.toml says (batch, {expected})")
                if dims[0] != -1 and dims[0] < max_batch:
                    raise BundleError(f"{name}: ONNX batch dimension is fixed at {dims[0]}; export with a dynamic "
                                      f"batch")
                if len(shape) == 3:
                    lo, opt, hi = profile_shapes(shape, max_batch, opt_batch)
                else:  # (C, T, H, W): same batch range
                    lo, opt, hi = ((b, *shape) for b in (1, opt_batch or max_batch, max_batch))
                profile.set_shape(tensor.name, lo, opt, hi)
            config.add_optimization_profile(profile)
            if mode is None:  # mode: engines.plans.build_mode (Q/DQ graphs: explicit INT8, never a calibrator)
                from engines.plans import build_mode, onnx_has_qdq

                mode = build_mode(precision, qdq=onnx_has_qdq(onnx_bytes), have_calibration_data=calibrator is not None)
            if mode.fp16:
                config.set_flag(trt.BuilderFlag.FP16)  # INT8 builds fall back to FP16 where INT8 is slower
            if mode.int8:
                config.set_flag(trt.BuilderFlag.INT8)  # a Q/DQ graph does not build without it
            if mode.calibrate:
                if calibrator is None:
                    raise ValueError("int8 calibration needs a calibrator")
                if calibrator.get_batch_size() != opt[0]:  # TensorRT calibrates at the profile's kOPT shape
                    raise ValueError(f"calibration batches of {calibrator.get_batch_size()} do not match the "
                                     f"calibration profile's optimum batch {opt[0]}")
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
    """A deserialized TensorRT plan: 1..8 inputs (B, C, H, W) or (B, C, T, H, W), one (B, classes) output.

    Host (page-locked) and device buffers are allocated once per tensor for the profile's max
    batch; run() copies in, executes and copies out asynchronously on one CUDA stream and waits
    once. Larger batches are split into max-batch chunks.

    The multi-input path (bundle format 2: a conv-fusion graph takes frame + flow_stack; clip
    inputs are 5-D) is written to the TensorRT >= 10 API (get_tensor_mode / set_input_shape /
    set_tensor_address per named tensor) but UNTESTED: no GPU was available when it was written
    (tests/test_gpu_hw.py covers the single-input path on a GPU machine).
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
            if not 1 <= len(inputs) <= 8 or len(outputs) != 1:
                raise BundleError(f"{self.path}: expected 1..8 inputs and one output, found {inputs} and {outputs}")
            self._output = outputs[0]
            in_shapes = [tuple(self._engine.get_tensor_shape(n)) for n in inputs]
            out_shape = tuple(self._engine.get_tensor_shape(self._output))
            bad = [sh for sh in in_shapes if len(sh) not in (4, 5) or any(d < 1 for d in sh[1:])]
            if bad or len(out_shape) != 2 or out_shape[1] < 1:
                raise BundleError(f"{self.path}: tensors are {in_shapes} -> {out_shape}, "
                                  f"expected (B,C,H,W) or (B,C,T,H,W) inputs -> (B,classes)")
            self.input_names = tuple(inputs)
            self.input_shapes = tuple(tuple(int(d) for d in sh[1:]) for sh in in_shapes)
            self.input_dtypes = tuple(np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in inputs)
            self.input_shape, self.input_dtype = self.input_shapes[0], self.input_dtypes[0]
            self.num_outputs = int(out_shape[1])
            # the profile's max batch of every input; the smallest bounds a run
            self.max_batch = min(int(self._engine.get_tensor_profile_shape(n, 0)[2][0]) for n in inputs)
            out_dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(self._output)))

            self._context = self._engine.create_execution_context()
            self._stream = cuda.Stream()
            self._host_in = [cuda.pagelocked_empty((self.max_batch, *sh), dt)
                             for sh, dt in zip(self.input_shapes, self.input_dtypes, strict=True)]
            self._host_out = cuda.pagelocked_empty((self.max_batch, self.num_outputs), out_dtype)
            self._dev_in = [cuda.mem_alloc(h.nbytes) for h in self._host_in]
            self._dev_out = cuda.mem_alloc(self._host_out.nbytes)
            # Addresses never change: the buffers are sized for the max batch and reused.
            for name, dev in zip(self.input_names, self._dev_in, strict=True):
                self._context.set_tensor_address(name, int(dev))
            self._context.set_tensor_address(self._output, int(self._dev_out))

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        if len(inputs) != len(self.input_shapes):
            raise ValueError(f"{self.path.name}: {len(inputs)} input(s) given, the plan takes {len(self.input_shapes)}")
        n = len(inputs[0])
        for x, shape in zip(inputs, self.input_shapes, strict=True):
            if x.shape[1:] != shape or len(x) != n:
                raise ValueError(f"{self.path.name}: input {x.shape} does not match (B={n}, {shape})")
        if n > self.max_batch:
            step = self.max_batch
            return np.concatenate([self.run(*(x[i:i + step] for x in inputs)) for i in range(0, n, step)])
        with self._devctx:
            cuda = self._cuda
            for name, x, host, dev, shape in zip(self.input_names, inputs, self._host_in, self._dev_in,
                                                 self.input_shapes, strict=True):
                np.copyto(host[:n], x, casting="same_kind")
                if not self._context.set_input_shape(name, (n, *shape)):
                    raise ValueError(f"{self.path.name}: batch {n} is outside the plan's profile 1..{self.max_batch}")
                cuda.memcpy_htod_async(dev, host[:n], self._stream)
            got = tuple(self._context.get_tensor_shape(self._output))
            if got != (n, self.num_outputs):
                raise BundleError(f"{self.path.name}: output shape {got}, expected {(n, self.num_outputs)}")
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
            for dev in self._dev_in:
                dev.free()
            self._dev_out.free()
            del self._context, self._engine, self._runtime
            self._engine = None
        self._devctx.release()
