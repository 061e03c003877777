"""Real TensorRT and CUDA-flow runs; they need an NVIDIA GPU, TensorRT >= 10 and pycuda (`pytest -m gpu`).

Each test skips with the name of what is missing. None of these has been executed on GPU
hardware yet (see docs/gpu.md).
"""
from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from engines.capabilities import detect_capabilities

pytestmark = pytest.mark.gpu
CAPS = detect_capabilities()
needs_tensorrt = pytest.mark.skipif(not CAPS.tensorrt_ready,
                                    reason=f"needs TensorRT + pycuda + a CUDA GPU: {CAPS.missing_for_tensorrt()}")
needs_cv_cuda = pytest.mark.skipif(CAPS.opencv_cuda_devices == 0,
                                   reason="needs OpenCV built with CUDA and a CUDA device "
                                          "(cv2.cuda.getCudaEnabledDeviceCount() == 0)")


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    from train.testing import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("gpu") / "tiny", num_classes=5, input_size=64, flow_length=3)


def _inputs(bundle, shared_data, windows=24):
    from stream.core.offline import read_video, video_flows, window_ends, window_inputs

    video = sorted((shared_data / "weizmann4").rglob("*.mp4"))[0]
    frames = read_video(video, bundle.input_size, max_frames=200)
    flows = video_flows(frames, bundle.flow)
    ends = window_ends(len(frames), bundle.flow_length, windows)
    return window_inputs(frames, flows, ends, flow_length=bundle.flow_length, mean=bundle.mean, std=bundle.std,
                         stacking=bundle.flow.stacking)


@needs_tensorrt
@pytest.mark.parametrize("precision, atol", [("fp32", 1e-3), ("fp16", 3e-2)])
def test_tensorrt_matches_onnxruntime(bundle_dir, shared_data, precision, atol):
    from engines.bundle import read_bundle
    from engines.cmd_build import build_bundle_plans
    from engines.onnxrt import OnnxRuntimeEngine
    from engines.tensorrt import TensorRTEngine

    bundle = read_bundle(bundle_dir)
    spatial, temporal = _inputs(bundle, shared_data)
    results = {r.network: r for r in build_bundle_plans(bundle, precision=precision, max_batch=8, workspace_mb=256)}
    for network, x, onnx in (("spatial", spatial, bundle.spatial_file), ("temporal", temporal, bundle.temporal_file)):
        want = OnnxRuntimeEngine(onnx).run(x)
        engine = TensorRTEngine(results[network].path)
        try:
            assert engine.input_shape == x.shape[1:] and engine.max_batch == 8
            for n in (1, 3, 8, len(x)):  # inside the profile, and a batch the engine must split
                got = engine.run(x[:n])
                assert got.shape == (n, bundle.num_classes) and got.dtype == np.float32
                np.testing.assert_allclose(got, want[:n], atol=atol, rtol=0)
        finally:
            engine.close()
    # a second build finds the plans up to date instead of rebuilding
    again = build_bundle_plans(bundle, precision=precision, max_batch=8, workspace_mb=256)
    assert not any(r.built for r in again)


@needs_tensorrt
def test_auto_picks_tensorrt_once_plans_exist(bundle_dir):
    from engines.bundle import read_bundle
    from engines.cmd_build import build_bundle_plans
    from engines.loader import open_bundle

    build_bundle_plans(read_bundle(bundle_dir), precision="fp32", max_batch=4, workspace_mb=256)
    loaded = open_bundle(bundle_dir, kind="auto")
    assert loaded.spatial.backend == "tensorrt" and "TensorRT plan present" in loaded.choice


@needs_tensorrt
def test_int8_calibration_builds_and_writes_cache(bundle_dir, shared_data):
    from engines.bundle import read_bundle
    from engines.cmd_build import build_bundle_plans

    bundle = read_bundle(bundle_dir)
    build_bundle_plans(bundle, precision="int8", max_batch=4, workspace_mb=256,
                       calib=str(shared_data / "weizmann4"), calib_videos=4, calib_batches=2)
    assert len(list((bundle_dir / "plans").glob("calib-*.cache"))) == 2


@needs_cv_cuda
@pytest.mark.parametrize("backend", ["farneback", "tvl1"])
def test_cuda_flow_close_to_cpu_flow(shared_data, backend):
    from stream.core.flow import FlowComputer, FlowSettings, quantize_flow, to_gray
    from stream.core.flow_cuda import CudaFlowComputer
    from stream.core.offline import read_video

    video = sorted((shared_data / "weizmann4").rglob("*.mp4"))[0]
    frames = read_video(video, 64, max_frames=12)
    gray = [to_gray(f) for f in frames]
    cpu = FlowComputer(FlowSettings(backend=backend))
    gpu = CudaFlowComputer(backend, 64, bundle_backend=backend)
    assert gpu.push(gray[0]) is None
    diffs = []
    for prev, cur in pairwise(gray):
        got = gpu.push(cur)
        assert got.shape == (64, 64, 2) and got.dtype == np.float32
        diffs.append(np.abs(quantize_flow(got, 20.0).astype(int) - quantize_flow(cpu(prev, cur), 20.0)).mean())
    # same algorithm, different implementation: close on average, not bit-identical
    assert float(np.mean(diffs)) < 2.0, diffs
