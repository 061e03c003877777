"""GPU path logic that runs without a GPU: plan keys and staleness, profile shapes, INT8 calibration
inputs, engine auto-selection, the messages when TensorRT/pycuda/CUDA are absent, `twostream doctor`.

Nothing here imitates TensorRT: plan files are opaque bytes to the cache rules under test.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engines.bundle import read_bundle
from engines.capabilities import GPU_NEEDED, Capabilities, GpuInfo, choose_engine, detect_capabilities
from engines.plans import (
    PlanKey,
    find_plan,
    input_shape,
    plan_key,
    plan_path,
    profile_shapes,
    sha256_file,
    sidecar_path,
    write_plan,
)
from stream.core.errors import ConfigError, TwostreamError

CPU_ONLY = Capabilities(ort_providers=("CPUExecutionProvider",), tensorrt_problem="not installed",
                        pycuda_problem="not installed", gpu_problem="no driver")
ORT_CUDA = replace(CPU_ONLY, ort_providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
TRT_READY = replace(ORT_CUDA, tensorrt_version="10.3.0", tensorrt_problem="", pycuda_version="2024.1",
                    pycuda_problem="", gpus=(GpuInfo(0, "NVIDIA GeForce RTX 3060", "8.6", 12288),), gpu_problem="")
HAS_GPU_STACK = detect_capabilities().tensorrt_ready


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    from train.testing import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny", num_classes=4, input_size=32, flow_length=3)


def _key(bundle, network="spatial", **changes) -> PlanKey:
    key = plan_key(bundle, network, gpu_name="NVIDIA GeForce RTX 3060", compute_capability="8.6",
                   tensorrt_version="10.3.0", precision="fp16", max_batch=8)
    return replace(key, **changes)


# ---- plan cache key and staleness --------------------------------------------------------------------------

def test_plan_key_changes_with_every_field(bundle_dir):
    bundle = read_bundle(bundle_dir)
    base = _key(bundle)
    assert base.onnx_sha256 == sha256_file(bundle.spatial_file)
    variants = [_key(bundle, gpu_name="NVIDIA A100"), _key(bundle, compute_capability="8.0"),
                _key(bundle, tensorrt_version="10.4.0"), _key(bundle, onnx_sha256="0" * 64),
                _key(bundle, precision="int8"), _key(bundle, max_batch=4), _key(bundle, "temporal")]
    slugs = {base.slug()} | {v.slug() for v in variants}
    assert len(slugs) == len(variants) + 1
    assert all("/" not in s and " " not in s for s in slugs)
    assert base.slug() == _key(bundle).slug()  # deterministic
    assert plan_path(bundle_dir, base).parent == bundle_dir / "plans"


def test_plan_found_only_when_machine_onnx_and_bytes_match(bundle_dir, tmp_path):
    bundle = read_bundle(bundle_dir)
    key = _key(bundle)
    assert find_plan(bundle_dir, key).state == "missing"
    path = write_plan(bundle_dir, key, b"opaque plan bytes", extra={"note": "test"})
    try:
        status = find_plan(bundle_dir, key)
        assert status.state == "ok" and status.path == path and status.usable
        assert json.loads(sidecar_path(path).read_text())["key"]["onnx_sha256"] == key.onnx_sha256

        # another GPU / TensorRT version: foreign, with both machines named
        other_gpu = find_plan(bundle_dir, replace(key, gpu_name="NVIDIA A100", compute_capability="8.0"))
        assert other_gpu.state == "foreign" and "RTX 3060" in other_gpu.message and "A100" in other_gpu.message
        assert find_plan(bundle_dir, replace(key, tensorrt_version="10.4.0")).state == "foreign"
        # the ONNX file changed since the build: stale
        stale = find_plan(bundle_dir, replace(key, onnx_sha256="f" * 64))
        assert stale.state == "stale" and "build-engines" in stale.message
        # another precision on the same machine is not the plan asked for, but is fine at runtime
        assert find_plan(bundle_dir, replace(key, precision="fp32")).state == "missing"
        assert find_plan(bundle_dir, replace(key, precision="fp32"), any_precision=True).usable

        # modified plan bytes: corrupt, never loaded
        path.write_bytes(b"opaque plan bytes, tampered")
        corrupt = find_plan(bundle_dir, key)
        assert corrupt.state == "corrupt" and "SHA-256" in corrupt.message
        # malformed sidecar
        write_plan(bundle_dir, key, b"opaque plan bytes")
        sidecar_path(path).write_text("{not json")
        assert find_plan(bundle_dir, key).state == "corrupt"
        sidecar_path(path).unlink()
        assert "missing" in find_plan(bundle_dir, key).message
    finally:
        for f in (bundle_dir / "plans").glob("*"):
            f.unlink()


def test_profile_shapes_follow_the_bundle_and_the_real_onnx_inputs(bundle_dir):
    from engines.onnxrt import OnnxRuntimeEngine

    bundle = read_bundle(bundle_dir)
    for network, onnx in (("spatial", bundle.spatial_file), ("temporal", bundle.temporal_file)):
        shape = input_shape(bundle, network)
        assert OnnxRuntimeEngine(onnx).input_shape == shape  # the bundle's claim matches the real model
        lo, opt, hi = profile_shapes(shape, 16)
        assert lo == (1, *shape) and opt == hi == (16, *shape)
        assert profile_shapes(shape, 16, 4)[1] == (4, *shape)
    assert input_shape(bundle, "temporal")[0] == 2 * bundle.flow_length
    with pytest.raises(ValueError):
        profile_shapes((3, 32, 32), 0)
    with pytest.raises(ValueError):
        profile_shapes((3, 32, 32), 4, 5)


# ---- INT8 calibration inputs ---------------------------------------------------------------------------------

def test_calibration_batches_equal_runtime_window_inputs(bundle_dir, shared_data):
    """Calibration batches against the runtime's conventions rebuilt here from OpenCV and numpy alone (not
    through stream.core.offline, which calibration itself uses): the newest frame of a window is the spatial
    input, the L flows ending at it (interleaved x, y, oldest first) the temporal one."""
    import cv2

    from engines.calibration import calibration_batches, find_calibration_videos
    from stream.core.flow import DIS_PRESETS

    bundle = read_bundle(bundle_dir)
    videos = find_calibration_videos(shared_data / "weizmann4", limit=3)
    assert len(videos) == 3 and len({v.parent for v in videos}) > 1  # spread over class folders
    spatial = list(calibration_batches(videos[:1], bundle, "spatial", batch_size=2, windows_per_video=4))
    temporal = list(calibration_batches(videos[:1], bundle, "temporal", batch_size=2, windows_per_video=4))
    assert len(spatial) == len(temporal) == 2
    S, L = bundle.input_size, bundle.flow_length
    assert all(b.shape == (2, 3, S, S) and b.dtype == np.float32 for b in spatial)
    assert all(b.shape == (2, 2 * L, S, S) and b.dtype == np.float32 for b in temporal)
    assert bundle.flow.backend == "dis" and bundle.flow.subtract == "none" and bundle.flow.stacking == "interleaved"

    cap = cv2.VideoCapture(str(videos[0]))
    rgb = []
    while len(rgb) < 300:
        ok, bgr = cap.read()
        if not ok:
            break
        rgb.append(cv2.cvtColor(cv2.resize(bgr, (S, S), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
    cap.release()
    n = len(rgb)
    ends = sorted({int(round(x)) for x in np.linspace(L, n - 1, 4)})  # 4 windows spread over the video
    assert len(ends) == 4
    dis = cv2.DISOpticalFlow_create(DIS_PRESETS[bundle.flow.preset])
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb]
    bound = bundle.flow.bound
    mean, std = np.float32(bundle.mean), np.float32(bundle.std)
    for k, e in enumerate(ends):
        want_s = ((rgb[e].astype(np.float32) - mean) / std).transpose(2, 0, 1)
        np.testing.assert_allclose(spatial[k // 2][k % 2], want_s, atol=1e-6)
        channels = []
        for i in range(e - L, e):  # flow from frame i to i+1, oldest first
            f = dis.calc(grey[i], grey[i + 1], None)
            q = np.rint((np.clip(f, -bound, bound) + bound) * 255.0 / (2 * bound))
            channels += [(q[..., 0] - 127.5) / 127.5, (q[..., 1] - 127.5) / 127.5]
        np.testing.assert_allclose(temporal[k // 2][k % 2], np.stack(channels), atol=1e-6)
    # values are real preprocessed data: normalised pixels, flow in [-1, 1] with actual motion
    t = np.concatenate(temporal)
    assert -1.0 <= t.min() and t.max() <= 1.0 and t.std() > 0


def test_calibration_video_discovery_errors(tmp_path):
    from engines.calibration import find_calibration_videos

    with pytest.raises(ConfigError, match="not a video file or a directory"):
        find_calibration_videos(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no video files"):
        find_calibration_videos(tmp_path)


# ---- engine auto-selection -----------------------------------------------------------------------------------

def test_choose_engine_auto():
    assert choose_engine("auto", CPU_ONLY, None)[0] == "onnxruntime-cpu"
    assert choose_engine("auto", ORT_CUDA, None)[0] == "onnxruntime-cuda"
    assert choose_engine("auto", TRT_READY, True)[0] == "tensorrt"
    kind, reason = choose_engine("auto", TRT_READY, False)
    assert kind == "onnxruntime-cuda" and "build-engines" in reason
    no_ort_cuda = replace(TRT_READY, ort_providers=("CPUExecutionProvider",))
    assert choose_engine("auto", no_ort_cuda, False)[0] == "onnxruntime-cpu"
    assert choose_engine("auto", replace(TRT_READY, gpus=()), True)[0] == "onnxruntime-cuda"
    assert choose_engine("onnxruntime", TRT_READY, True)[0] == "onnxruntime-cuda"
    assert choose_engine("tensorrt", TRT_READY, True)[0] == "tensorrt"
    kind, reason = choose_engine("auto", CPU_ONLY, None)
    assert "tensorrt: not installed" in reason


def test_choose_engine_tensorrt_refusals():
    with pytest.raises(ConfigError) as err:
        choose_engine("tensorrt", CPU_ONLY, None)
    assert GPU_NEEDED in str(err.value) and "pycuda" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="build-engines"):
        choose_engine("tensorrt", TRT_READY, False)
    with pytest.raises(ConfigError, match="expected one of"):
        choose_engine("cuda", CPU_ONLY, None)


def test_open_bundle_auto_reports_its_choice(bundle_dir):
    from engines.loader import open_bundle, open_engine

    loaded = open_bundle(bundle_dir, kind="auto")
    expected = choose_engine("auto", detect_capabilities(), None)[0]
    assert loaded.spatial.backend == expected and expected in loaded.choice
    if not HAS_GPU_STACK:
        assert loaded.spatial.backend == "onnxruntime-cpu" and "TensorRT unavailable" in loaded.choice
        with pytest.raises(TwostreamError) as err:
            open_engine(read_bundle(bundle_dir).spatial_file, kind="tensorrt")
        assert GPU_NEEDED in str(err.value)


# ---- TensorRT build decisions: Q/DQ graphs, calibration batch size (issue 12, point 8) -------------------------

@pytest.fixture(scope="module")
def quantized_bundle(bundle_dir, shared_data, tmp_path_factory) -> Path:
    """The tiny bundle with both networks int8-quantized (ONNX Runtime static QDQ on real windows), like
    `twostream export --quantize int8` and the shipped models/default."""
    import shutil

    from engines.calibration import calibration_batches, find_calibration_videos
    from train.quantize import quantize_int8

    out = Path(shutil.copytree(bundle_dir, tmp_path_factory.mktemp("q") / "bundle",
                               ignore=shutil.ignore_patterns("plans")))
    bundle = read_bundle(out)
    videos = find_calibration_videos(shared_data / "weizmann4", limit=2)
    for network in ("spatial", "temporal"):
        calib = np.concatenate(list(calibration_batches(videos, bundle, network, batch_size=4, windows_per_video=4)))
        path = out / f"{network}.onnx"
        quantize_int8(path, out / "q.onnx", calib)
        (out / "q.onnx").replace(path)
    return out


def test_qdq_graphs_are_detected_from_the_onnx_bytes(bundle_dir, quantized_bundle, repo_root, tmp_path):
    import onnx

    from engines.plans import onnx_has_qdq, onnx_op_types
    from train.quantize import convert_fp16

    convert_fp16(bundle_dir / "spatial.onnx", tmp_path / "fp16.onnx")
    files = [bundle_dir / "spatial.onnx", bundle_dir / "temporal.onnx", tmp_path / "fp16.onnx",
             quantized_bundle / "spatial.onnx", quantized_bundle / "temporal.onnx",
             repo_root / "models" / "default" / "spatial.onnx", repo_root / "models" / "default" / "temporal.onnx"]
    for f in files:  # the scan reads what the onnx package reads
        model = onnx.load(str(f))
        want = {n.op_type for n in model.graph.node} | {n.op_type for fn in model.functions for n in fn.node}
        assert onnx_op_types(f.read_bytes()) == want, f
    assert [onnx_has_qdq(f.read_bytes()) for f in files] == [False, False, False, True, True, True, True]
    for bad in (b"\xff\xff\xff", (bundle_dir / "spatial.onnx").read_bytes()[:-7]):
        with pytest.raises(ValueError):
            onnx_op_types(bad)


def test_build_mode_table():
    from engines.plans import build_mode

    for requested in ("fp32", "fp16", "int8"):
        for have in (False, True):
            m = build_mode(requested, qdq=True, have_calibration_data=have)
            # a Q/DQ graph: INT8 always on (TensorRT refuses Q/DQ layers without it), never a calibrator
            assert m.int8 and not m.calibrate and m.fp16 == (requested != "fp32") and "Q/DQ" in m.note
    assert build_mode("fp32", qdq=False, have_calibration_data=False) == build_mode("fp32", qdq=False,
                                                                                   have_calibration_data=True)
    m = build_mode("fp32", qdq=False, have_calibration_data=False)
    assert not (m.fp16 or m.int8 or m.calibrate)
    m = build_mode("fp16", qdq=False, have_calibration_data=False)
    assert m.fp16 and not (m.int8 or m.calibrate)
    m = build_mode("int8", qdq=False, have_calibration_data=True)
    assert m.fp16 and m.int8 and m.calibrate
    with pytest.raises(ConfigError, match="--int8 needs --calib"):
        build_mode("int8", qdq=False, have_calibration_data=False)
    with pytest.raises(ValueError):
        build_mode("bf16", qdq=False, have_calibration_data=False)


def test_build_engines_decides_per_network_from_the_bundle(bundle_dir, quantized_bundle, repo_root, tmp_path,
                                                           twostream_cmd):
    """build-engines on the shipped int8 bundle: --fp16 (as the README documents) and --int8 without --calib
    build explicit int8 with no calibrator; a float bundle still needs --calib for --int8."""
    import shutil

    from engines.cmd_build import check_flags

    shipped = read_bundle(repo_root / "models" / "default")
    for bundle in (shipped, read_bundle(quantized_bundle)):
        for precision in ("fp16", "int8"):
            modes = check_flags(bundle, precision, None)
            assert len(modes) == 2 and all(m.int8 and m.fp16 and not m.calibrate for m in modes)
        assert not any(m.calibrate for m in check_flags(bundle, "int8", str(tmp_path)))  # --calib unused
    float_modes = check_flags(read_bundle(bundle_dir), "int8", str(tmp_path))
    assert all(m.calibrate for m in float_modes)
    with pytest.raises(ConfigError, match="--int8 needs --calib"):
        check_flags(read_bundle(bundle_dir), "int8", None)
    if not HAS_GPU_STACK:  # the command gets past the flag check to the GPU message (it used to stop at --calib)
        copy = Path(shutil.copytree(quantized_bundle, tmp_path / "qb"))
        proc = subprocess.run(twostream_cmd + ["build-engines", str(copy), "--int8"], cwd=repo_root,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and GPU_NEEDED in proc.stderr and "--calib" not in proc.stderr, proc.stderr


def test_int8_calibration_batches_have_the_profile_optimum_shape(bundle_dir, shared_data):
    from engines.cmd_build import calibration_inputs
    from engines.plans import calibration_batch_size, calibration_windows_per_video

    bundle = read_bundle(bundle_dir)
    for max_batch in (16, 4):
        for network in ("spatial", "temporal"):
            shape = input_shape(bundle, network)
            opt = profile_shapes(shape, max_batch)[1]  # the profile build_plan gives set_calibration_profile
            videos, batch_size, batches = calibration_inputs(bundle, network, str(shared_data / "weizmann4"), 3, 2,
                                                             max_batch)
            got = list(batches)
            assert batch_size == opt[0] == max_batch and len(videos) == 3
            assert len(got) == 2 and all(b.shape == opt and b.dtype == np.float32 for b in got)
    assert calibration_batch_size(16, 4) == 4 and calibration_batch_size(16) == 16
    assert calibration_windows_per_video(16, 16, 32) == 8 and calibration_windows_per_video(2, 4, 32) == 4
    with pytest.raises(ValueError):
        calibration_batch_size(4, 8)


# ---- messages without the GPU stack ---------------------------------------------------------------------------

@pytest.mark.skipif(HAS_GPU_STACK, reason="TensorRT, pycuda and a CUDA device are present here")
def test_gpu_entry_points_fail_with_the_gpu_message(bundle_dir, twostream_cmd, repo_root):
    from engines.tensorrt import TensorRTEngine, import_gpu_stack

    for call in (import_gpu_stack, lambda: TensorRTEngine(bundle_dir / "spatial.onnx")):
        with pytest.raises(TwostreamError) as err:
            call()
        assert GPU_NEEDED in str(err.value)
    for argv in (["build-engines", str(bundle_dir)], ["build-engines", str(bundle_dir), "--fp16"],
                 ["doctor", "--gpu-selftest", str(bundle_dir)]):
        proc = subprocess.run(twostream_cmd + argv, cwd=repo_root, capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and GPU_NEEDED in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not (bundle_dir / "plans").exists() or not list((bundle_dir / "plans").glob("*.plan"))


def test_build_engines_flag_errors(bundle_dir, twostream_cmd, repo_root):
    proc = subprocess.run(twostream_cmd + ["build-engines", str(bundle_dir), "--int8"], cwd=repo_root,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--int8 needs --calib" in proc.stderr


def test_cuda_flow_refuses_other_algorithms_and_missing_cuda():
    from stream.core.flow_cuda import CudaFlowComputer, check_flow_algorithm, cuda_device_count

    check_flow_algorithm("farneback", "farneback")
    check_flow_algorithm("tvl1", "tvl1")
    for bundle_backend, cuda_backend in (("dis", "farneback"), ("farneback", "tvl1"), ("tvl1", "nvof")):
        with pytest.raises(ConfigError) as err:
            check_flow_algorithm(bundle_backend, cuda_backend)
        assert repr(bundle_backend) in str(err.value) and "accuracy" in str(err.value)
        check_flow_algorithm(bundle_backend, cuda_backend, allow_other_algorithm=True)  # explicit opt-in
    assert "DIS has no CUDA version" in _message(lambda: check_flow_algorithm("dis", "tvl1"))
    if cuda_device_count() == 0:
        message = _message(lambda: CudaFlowComputer("farneback", 32, bundle_backend="farneback"))
        assert GPU_NEEDED in message and "getCudaEnabledDeviceCount" in message
    # the algorithm check comes first: a mismatch is reported even on a machine without CUDA
    assert "accuracy" in _message(lambda: CudaFlowComputer("nvof", 32, bundle_backend="dis"))


def _message(call) -> str:
    with pytest.raises(ConfigError) as err:
        call()
    return str(err.value)


# ---- twostream doctor on this machine -------------------------------------------------------------------------

def test_doctor_reports_this_machine(twostream_cmd, repo_root, bundle_dir):
    env = dict(os.environ)
    text = subprocess.run(twostream_cmd + ["doctor"], cwd=repo_root, capture_output=True, text=True, timeout=60,
                          env=env)
    assert text.returncode == 0, text.stderr
    caps = detect_capabilities()
    for provider in caps.ort_providers:
        assert provider in text.stdout
    assert "flow backends (CPU)    : dis, farneback, tvl1" in text.stdout
    auto = choose_engine("auto", caps, None)[0]
    assert f"engine 'auto' picks    : {auto}" in text.stdout

    js = subprocess.run(twostream_cmd + ["doctor", "--json", "--bundle", str(bundle_dir)], cwd=repo_root,
                        capture_output=True, text=True, timeout=60)
    assert js.returncode == 0, js.stderr
    doc = json.loads(js.stdout)
    assert doc["ort_providers"] == list(caps.ort_providers)
    assert doc["tensorrt_ready"] == caps.tensorrt_ready
    assert set(doc["plans"]) == {"spatial", "temporal"}
    assert doc["auto_engine"] == auto
    if not caps.tensorrt_ready:
        assert doc["auto_engine"] in ("onnxruntime-cpu", "onnxruntime-cuda")
        assert doc["plans"]["spatial"]["state"] == "unchecked"


def test_doctor_does_not_import_torch(repo_root):
    code = ("import sys; from stream.cli import main; main(['doctor']); "
            "sys.exit(3 if any(m == 'torch' or m.startswith('torch.') for m in sys.modules) else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
