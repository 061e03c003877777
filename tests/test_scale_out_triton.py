"""Triton: export-triton repositories, and the `triton` engine against a REAL tritonserver on 127.0.0.1.

The server is nvidia-pytriton's tritonserver 2.51 (python backend only), installed by `make triton-server`
into .venv/tritonserver; it serves the exported repository through the test-only python-backend variant
(--model-config-name=python), which runs the very ONNX files with onnxruntime. The pipeline runs as a
subprocess (`twostream run --engine triton`), its output read over real ZeroMQ.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, count_frames, run_pipeline

from engines.triton_repo import export_triton
from engines.triton_server import LocalTritonServer, find_install, free_port
from stream.clients.client import EndOfStream, Prediction, Status

L, STRIDE = 4, 5  # tiny_bundle's flow length; the default stride
# Scores through Triton vs in-process ORT: same ONNX, same ORT, but batch composition can differ (dynamic
# batching); measured max |diff| ~1e-7 on these nets. 1e-4 leaves room and still catches any real change.
SCORE_TOL = 1e-4


@pytest.fixture(scope="module")
def triton_install():
    install, why = find_install()
    if install is None:
        pytest.skip(f"tritonserver cannot run here: {why}")
    return install


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, tiny_bundle):
    """tiny (the local bundle), other (same shapes, other weights: hash mismatch), swapped (shape mismatch)."""
    from train.testing import make_tiny_bundle

    root = tmp_path_factory.mktemp("triton_bundles")
    other = make_tiny_bundle(root / "other", num_classes=4, input_size=32, flow_length=4,
                             labels=["bend", "jack", "wave1", "wave2"], seed=1)
    swapped = root / "swapped"
    shutil.copytree(tiny_bundle, swapped)
    (swapped / "spatial.onnx").write_bytes((tiny_bundle / "temporal.onnx").read_bytes())
    (swapped / "temporal.onnx").write_bytes((tiny_bundle / "spatial.onnx").read_bytes())
    return {"tiny": tiny_bundle, "other": other, "swapped": swapped}


@pytest.fixture(scope="module")
def server(triton_install, bundles, tmp_path_factory):
    repo = tmp_path_factory.mktemp("triton_repo")
    export_triton(ROOT / "models" / "default", repo, kind="cpu")  # twostream_*: the shipped, trained model
    export_triton(bundles["tiny"], repo, prefix="tiny_", kind="cpu")
    export_triton(bundles["other"], repo, prefix="other_", kind="cpu")
    export_triton(bundles["swapped"], repo, prefix="swapped_", kind="cpu")
    for name in ("other_temporal", "swapped_temporal"):  # the check fails on spatial: fewer models, faster start
        shutil.rmtree(repo / name)
    srv = LocalTritonServer(triton_install, repo, log_path=repo.parent / "tritonserver.log")
    srv.start()
    yield srv
    srv.kill()  # SIGKILL, regions in /dev/shm removed: a graceful stop only adds seconds here


def write_config(path: Path, url: str, prefix: str, **extra) -> Path:
    lines = ["[engine]", 'kind = "triton"', f'triton_url = "{url}"', f'triton_model_prefix = "{prefix}"']
    lines += [f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines).replace("'", '"') + "\n")
    return path


# --- export ----------------------------------------------------------------------------------------
def test_export_config_is_shaped_from_the_onnx_files_and_idempotent(tmp_path, bundles, twostream_cmd):
    repo = tmp_path / "repo"
    proc = subprocess.run([*twostream_cmd, "export-triton", str(bundles["tiny"]), str(repo), "--max-batch", "8",
                           "--queue-delay-us", "250"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    cfg = (repo / "twostream_temporal" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in cfg and "max_batch_size: 8" in cfg
    assert "dims: [ 8, 32, 32 ]" in cfg  # 2L = 8 flow channels of 32x32: from the ONNX file, not bundle.toml
    assert "dims: [ 4 ]" in cfg and "max_queue_delay_microseconds: 250" in cfg and "KIND_GPU" in cfg
    assert "dims: [ 3, 32, 32 ]" in (repo / "twostream_spatial" / "config.pbtxt").read_text()
    variant = (repo / "twostream_spatial" / "configs" / "python.pbtxt").read_text()
    assert 'backend: "python"' in variant and "KIND_CPU" in variant
    served = repo / "twostream_spatial" / "1" / "model.onnx"
    assert served.read_bytes() == (bundles["tiny"] / "spatial.onnx").read_bytes()
    assert (repo / "twostream_spatial" / "labels.txt").read_text().split() == ["bend", "jack", "wave1", "wave2"]
    mtimes = {p: p.stat().st_mtime_ns for p in repo.rglob("*")}
    again = subprocess.run([*twostream_cmd, "export-triton", str(bundles["tiny"]), str(repo), "--max-batch", "8",
                            "--queue-delay-us", "250"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stdout.count(": unchanged") == 2, again.stdout
    assert {p: p.stat().st_mtime_ns for p in repo.rglob("*")} == mtimes  # nothing rewritten

    # another bundle under the same names: refused (one line, names --force), then replaced with --force
    refused = subprocess.run([*twostream_cmd, "export-triton", str(bundles["other"]), str(repo)], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "twostream_spatial" in refused.stderr and "--force" in refused.stderr
    assert served.read_bytes() == (bundles["tiny"] / "spatial.onnx").read_bytes()
    forced = export_triton(bundles["other"], repo, force=True, kind="cpu")
    assert forced.models == {"twostream_spatial": "replaced", "twostream_temporal": "replaced"}
    assert served.read_bytes() == (bundles["other"] / "spatial.onnx").read_bytes()
    assert "KIND_CPU" in (repo / "twostream_spatial" / "config.pbtxt").read_text()
    assert not [p for p in repo.iterdir() if p.name.startswith(".")]  # no temporary directories left


# --- engine ----------------------------------------------------------------------------------------
def test_engine_scores_equal_in_process_onnxruntime(server, bundles):
    from engines.bundle import read_bundle
    from engines.onnxrt import OnnxRuntimeEngine
    from engines.triton import open_triton
    from stream.core.config import EngineSettings

    bundle = read_bundle(bundles["tiny"])
    options = EngineSettings(kind="triton", triton_url=server.url, triton_model_prefix="tiny_")
    rng = np.random.default_rng(0)
    for network, path in (("spatial", bundle.spatial_file), ("temporal", bundle.temporal_file)):
        remote = open_triton(bundle, network, options)
        local = OnnxRuntimeEngine(path)
        assert remote.input_shape == local.input_shape and remote.num_outputs == local.num_outputs == 4
        x = rng.standard_normal((20, *local.input_shape)).astype(np.float32)  # 20 > max_batch 16: split in two
        np.testing.assert_allclose(remote.run(x), local.run(x), atol=SCORE_TOL)


def test_dynamic_batching_merges_concurrent_requests_and_answers_each_its_own(server, bundles):
    """8 clients at once: Triton merges their requests into fewer executions of model.py, which must hand
    every request back exactly its own rows."""
    from concurrent.futures import ThreadPoolExecutor

    import tritonclient.grpc as grpcclient

    from engines.bundle import read_bundle
    from engines.onnxrt import OnnxRuntimeEngine
    from engines.triton import open_triton
    from stream.core.config import EngineSettings

    bundle = read_bundle(bundles["tiny"])
    options = EngineSettings(kind="triton", triton_url=server.url, triton_model_prefix="tiny_")
    local = OnnxRuntimeEngine(bundle.temporal_file)
    rng = np.random.default_rng(2)
    inputs = [rng.standard_normal((1 + i % 3, *local.input_shape)).astype(np.float32) for i in range(48)]
    client = grpcclient.InferenceServerClient(server.url.split("://")[1])
    before = client.get_inference_statistics("tiny_temporal", as_json=True)["model_stats"][0]

    def one(k):
        engine = open_triton(bundle, "temporal", options, verify=False)  # one channel per client, as per host
        try:
            return [engine.run(x) for x in inputs[k::8]]
        finally:
            engine.close()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(8)))
    for k in range(8):
        for x, got in zip(inputs[k::8], answers[k], strict=True):
            np.testing.assert_allclose(got, local.run(x), atol=SCORE_TOL)
    after = client.get_inference_statistics("tiny_temporal", as_json=True)["model_stats"][0]
    client.close()

    def count(stats, *path):  # proto3 JSON leaves zero counters out
        for key in path[:-1]:
            stats = stats.get(key, {})
        return int(stats.get(path[-1], 0))

    success = ("inference_stats", "success", "count")
    requests = count(after, *success) - count(before, *success)
    executions = count(after, "execution_count") - count(before, "execution_count")
    assert requests == 48  # verification asks for the config, never runs the model
    assert executions < requests, f"{executions} executions for {requests} requests: nothing was batched"
    print(f"\ndynamic batching: {requests} requests in {executions} executions (8 concurrent clients)")


def test_pipeline_with_triton_gives_the_labels_of_in_process_onnxruntime(server, shared_data, tmp_path):
    clip = shared_data / "weizmann4" / "jack" / "actor0_jack.mp4"
    cfg = write_config(tmp_path / "triton.toml", server.url, "twostream_")
    runs = {}
    for engine in ("onnxruntime", "triton"):
        args = ["--pace", "fast", "--engine", engine, f"cam={clip}"]
        args += ["--config", str(cfg)] if engine == "triton" else []
        proc, messages = run_pipeline(args, expect_eos=1, timeout=90)
        assert proc.returncode == 0, proc.stderr
        runs[engine] = [m for m in messages if isinstance(m, Prediction)]
        if engine == "triton":
            assert any(isinstance(m, Status) and m.details.get("engine") == "triton" for m in messages)
    ort, tri = runs["onnxruntime"], runs["triton"]
    L10 = 10  # models/default's flow length
    assert len(tri) == len(ort) == len(range(L10, count_frames(clip), STRIDE)) > 0
    assert [p.label for p in tri] == [p.label for p in ort]
    assert [p.seq for p in tri] == list(range(len(ort)))
    assert {p.label for p in tri} == {"jack"}  # the trained model on a held-in clip: a real, stable answer
    for a, b in zip(tri, ort, strict=True):
        assert a.frame == b.frame
        assert abs(a.score - b.score) <= 1e-3  # published scores are rounded to 4 decimals


@pytest.mark.parametrize("prefix, culprit", [
    ("other_", "ONNX content hash"),  # same shapes, other weights
    ("swapped_", "input shape [8, 32, 32] != [3, 32, 32]"),
    ("missing_", "'missing_spatial' is not ready"),
])
def test_server_model_that_differs_is_a_one_line_error(server, bundles, tmp_path, twostream_cmd, shared_data,
                                                        prefix, culprit):
    cfg = write_config(tmp_path / "c.toml", server.url, prefix)
    clip = shared_data / "replay" / "mmaction2_test.avi"
    proc = subprocess.run([*twostream_cmd, "run", "--model", str(bundles["tiny"]), "--config", str(cfg),
                           "--pace", "fast", str(clip)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert culprit in lines[0] and server.url in lines[0]


def test_unreachable_server_is_a_one_line_error(bundles, tmp_path, twostream_cmd, shared_data):
    url = f"grpc://127.0.0.1:{free_port()}"
    cfg = write_config(tmp_path / "c.toml", url, "tiny_", triton_timeout=1.0)
    proc = subprocess.run([*twostream_cmd, "run", "--model", str(bundles["tiny"]), "--config", str(cfg),
                           str(shared_data / "replay" / "mmaction2_test.avi")], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert url in proc.stderr and "not reachable" in proc.stderr


# --- outages ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def own_server(triton_install, bundles, tmp_path_factory):
    """A server only the outage tests use (they kill and restart it): tiny_ models."""
    repo = tmp_path_factory.mktemp("outage_repo")
    export_triton(bundles["tiny"], repo, prefix="tiny_", kind="cpu")
    srv = LocalTritonServer(triton_install, repo, log_path=repo.parent / "outage-tritonserver.log")
    srv.start()
    yield srv
    srv.kill()  # SIGKILL, regions in /dev/shm removed: a graceful stop only adds seconds here


def _kill_and_restart(srv: LocalTritonServer, first_prediction: threading.Event, down_s: float, marks: dict):
    first_prediction.wait(60)
    marks["killed"] = time.time()
    srv.kill()
    time.sleep(down_s)
    srv.start()
    marks["ready"] = time.time()


def _outage_run(srv, bundle, tmp_path, clip, pace: str, down_s: float, extra: list[str]):
    """`twostream run` against `srv` while another thread kills the server at the first prediction and
    restarts it down_s later. Returns (process, [(arrival time, message)], {"killed": t, "ready": t})."""
    from stream.clients.client import Subscriber

    cfg = write_config(tmp_path / "outage.toml", srv.url, "tiny_", triton_timeout=1.0, outage_backoff_max=0.5)
    first = threading.Event()
    marks: dict = {}
    killer = threading.Thread(target=_kill_and_restart, args=(srv, first, down_s, marks), daemon=True)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    arrivals = []
    with Subscriber(endpoint, status=True, timeout=0.2) as sub:
        proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "run", "--model", str(bundle), "--config",
                                 str(cfg), "--pace", pace, *extra, f"cam={clip}", "--publish", endpoint],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        killer.start()
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                msg = sub.recv()
            except TimeoutError:
                if proc.poll() is not None:
                    break
                continue
            arrivals.append((time.time(), msg))
            if isinstance(msg, Prediction):
                first.set()
            if isinstance(msg, EndOfStream):
                break
        first.set()  # never leave the killer waiting
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    killer.join(60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), arrivals, marks


def test_live_source_survives_a_server_restart_dropping_windows_meanwhile(own_server, bundles, tmp_path, shared_data):
    clip = shared_data / "replay" / "one_by_one_person.mp4"  # 10 fps: realtime replay, like a camera
    proc, arrivals, marks = _outage_run(own_server, bundles["tiny"], tmp_path, clip, "realtime", 1.0,
                                        ["--max-frames", "150"])
    messages = [m for _, m in arrivals]
    assert proc.returncode == 0, proc.stderr
    assert "killed" in marks and "ready" in marks, "the server was not killed and restarted during the run"
    preds = [m for m in messages if isinstance(m, Prediction)]
    assert [p.seq for p in preds] == list(range(len(preds)))  # seq continues across the outage
    before = [p for t, p in arrivals if isinstance(p, Prediction) and t < marks["killed"]]
    after = [(t, p) for t, p in arrivals if isinstance(p, Prediction) and t > marks["ready"]]
    assert before and len(after) >= 3, "predictions must resume after the server is back"
    statuses = [(t, m) for t, m in arrivals if isinstance(m, Status)]
    during = [m for t, m in statuses if marks["killed"] < t < marks["ready"]]
    assert any(m.details.get("engine_state") == "unavailable" for m in during)
    assert statuses[-1][1].details.get("engine_state") == "ok"
    eos = [m for m in messages if isinstance(m, EndOfStream)]
    assert len(eos) == 1 and not eos[0].error and eos[0].windows_dropped > 0  # live: dropped (and counted)
    said = min(t for t, m in statuses if t > marks["killed"] and m.details.get("engine_state") == "unavailable")
    print(f"\nlive outage: server down {marks['ready'] - marks['killed']:.1f} s (kill -> ready again); status said "
          f"unavailable {said - marks['killed']:.2f} s after the kill (status every 1 s); first prediction "
          f"{after[0][0] - marks['ready']:.2f} s after ready; {eos[0].windows_dropped} windows dropped")


def test_fast_file_waits_for_the_server_and_loses_nothing(own_server, bundles, tmp_path, shared_data):
    clip = shared_data / "replay" / "one_by_one_person.mp4"
    # The whole 1394-frame clip: on an idle machine 500 frames in fast pace were all published before the
    # server was killed at the first prediction, so the outage missed the run (seen on a clean-clone run).
    frames = 1390
    proc, arrivals, marks = _outage_run(own_server, bundles["tiny"], tmp_path, clip, "fast", 0.5,
                                        ["--max-frames", str(frames)])
    messages = [m for _, m in arrivals]
    assert proc.returncode == 0, proc.stderr
    assert "killed" in marks and "ready" in marks
    preds = [m for m in messages if isinstance(m, Prediction)]
    want = list(range(L, frames, STRIDE))
    assert [p.frame for p in preds] == want  # every window, in order: files wait instead of dropping
    assert [p.seq for p in preds] == list(range(len(want)))
    after = [t for t, p in arrivals if isinstance(p, Prediction) and t > marks["ready"]]
    assert after, "the run must have finished after the server came back"
    eos = [m for m in messages if isinstance(m, EndOfStream)]
    assert len(eos) == 1 and not eos[0].error and eos[0].windows_dropped == 0
    print(f"\nfast-file outage: first prediction {after[0] - marks['ready']:.2f} s after the server was ready")


def test_a_frozen_server_times_out_as_unavailable_and_recovers(own_server, bundles):
    """SIGSTOP (a hung host, a partition): requests time out after triton_timeout instead of hanging."""
    import os
    import signal

    from engines.base import EngineUnavailable
    from engines.bundle import read_bundle
    from engines.onnxrt import OnnxRuntimeEngine
    from engines.triton import open_triton
    from stream.core.config import EngineSettings

    bundle = read_bundle(bundles["tiny"])
    engine = open_triton(bundle, "spatial", EngineSettings(kind="triton", triton_url=own_server.url,
                                                           triton_model_prefix="tiny_", triton_timeout=0.5))
    x = np.random.default_rng(3).standard_normal((2, *engine.input_shape)).astype(np.float32)
    want = OnnxRuntimeEngine(bundle.spatial_file).run(x)
    np.testing.assert_allclose(engine.run(x), want, atol=SCORE_TOL)
    os.killpg(own_server.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with pytest.raises(EngineUnavailable) as exc:
            engine.run(x)
        waited = time.monotonic() - t0
    finally:
        os.killpg(own_server.proc.pid, signal.SIGCONT)
    assert waited < 3.0 and own_server.url in str(exc.value)
    deadline = time.monotonic() + 20
    while True:  # the server answers again once it runs
        try:
            np.testing.assert_allclose(engine.run(x), want, atol=SCORE_TOL)
            break
        except EngineUnavailable:
            assert time.monotonic() < deadline, "no answer after SIGCONT"
            time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-s"]))
