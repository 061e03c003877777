"""Security: CURVE on the PUB socket (real pipeline, real subscribers), bundle validation before loading."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth
from rtsp_fixtures import *  # noqa: F403
from rtsp_fixtures import ROOT, Collector, PipelineRun, write_config

from engines.bundle import MAX_MODEL_BYTES, read_bundle
from stream.clients.client import Prediction
from stream.core.errors import BundleError, ConfigError
from stream.runtime.security import client_curve


@pytest.fixture
def keys(tmp_path) -> Path:
    root = tmp_path / "keys"
    allowed = root / "allowed"
    allowed.mkdir(parents=True)
    for name in ("server", "client", "intruder"):
        zmq.auth.create_certificates(root, name)
    shutil.copy(root / "client.key", allowed / "client.key")
    return root


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")
def test_curve_only_authenticated_subscriber_receives(tmp_path, h264_clip, tiny_bundle, keys):
    config = write_config(tmp_path / "cfg.toml", publish={
        "status_interval": 0.2, "curve_secret_key": str(keys / "server.key_secret"),
        "curve_clients": str(keys / "allowed")})
    run = PipelineRun(tmp_path, [f"cam={h264_clip}"], bundle=tiny_bundle, config=config,
                      extra=["--max-frames", "200"])
    good = Collector(run.endpoint, curve=client_curve(str(keys / "server.key"), str(keys / "client.key_secret")))
    plain = Collector(run.endpoint)  # no CURVE at all
    intruder = Collector(run.endpoint,  # CURVE with the right server key, but not on the list
                         curve=client_curve(str(keys / "server.key"), str(keys / "intruder.key_secret")))
    wrong_server = Collector(run.endpoint, curve=client_curve(str(keys / "client.key"), None))
    cli = subprocess.run([sys.executable, "-m", "stream.cli", "subscribe", "--connect", run.endpoint, "--count", "3",
                          "--json", "--timeout", "30", "--curve-server-key", str(keys / "server.key"),
                          "--curve-client-key", str(keys / "client.key_secret")], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    try:
        assert good.wait_for(lambda m: isinstance(m, Prediction) and m.seq >= 5, 30), run.stderr
        time.sleep(0.5)
        assert run.wait(60) == 0, run.stderr
    finally:
        for c in (good, plain, intruder, wrong_server):
            c.close()
        run.close()
    assert cli.returncode == 0 and len(cli.stdout.splitlines()) == 3, cli.stderr
    assert len(good.messages) > 5
    assert plain.messages == [] and intruder.messages == [] and wrong_server.messages == []


def test_curve_bad_key_files_are_config_errors(tmp_path, keys):
    from stream.core.config import PublishSettings
    from stream.runtime.publisher import Publisher

    endpoint = f"ipc://{tmp_path}/p.sock"
    cases = [(str(keys / "server.key"), "", "has no secret-key"),  # public key given as the secret
             (str(tmp_path / "none.key_secret"), "", "no such key file"),
             (str(keys / "server.key_secret"), str(tmp_path / "empty_dir"), "curve_clients")]
    (tmp_path / "empty_dir").mkdir()
    junk = tmp_path / "junk.key_secret"
    junk.write_bytes(os.urandom(64))
    cases.append((str(junk), "", "not a ZeroMQ certificate"))
    for secret, clients, expect in cases:
        with pytest.raises(ConfigError, match=expect):
            Publisher(PublishSettings(endpoint=endpoint, sndhwm=10, curve_secret_key=secret, curve_clients=clients))


# --- bundle validation ------------------------------------------------------------------------------------
def _copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "b"))


def test_bundle_rejects_paths_outside(tmp_path, tiny_bundle):
    bundle = _copy(tiny_bundle, tmp_path)
    (tmp_path / "outside.onnx").write_bytes((bundle / "spatial.onnx").read_bytes())
    toml = (bundle / "bundle.toml").read_text()
    for name in ("../outside.onnx", str(tmp_path / "outside.onnx"), "sub/../../outside.onnx"):
        (bundle / "bundle.toml").write_text(toml.replace('spatial = "spatial.onnx"', f'spatial = "{name}"'))
        with pytest.raises(BundleError, match="outside the bundle directory"):
            read_bundle(bundle)
    # a symlink inside the bundle that leads outside is outside too
    (bundle / "bundle.toml").write_text(toml)
    (bundle / "spatial.onnx").unlink()
    (bundle / "spatial.onnx").symlink_to(tmp_path / "outside.onnx")
    with pytest.raises(BundleError, match="outside the bundle directory"):
        read_bundle(bundle)


def test_bundle_rejects_insane_sizes(tmp_path, tiny_bundle):
    bundle = _copy(tiny_bundle, tmp_path)
    read_bundle(bundle)  # the copy itself is fine
    with open(bundle / "temporal.onnx", "r+b") as f:  # sparse: costs no disk
        f.truncate(MAX_MODEL_BYTES + 1)
    with pytest.raises(BundleError, match="refusing to load"):
        read_bundle(bundle)
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "c"))
    with open(bundle / "labels.txt", "r+b") as f:
        f.truncate(2 * 1024 * 1024)
    with pytest.raises(BundleError, match="too large for a label list"):
        read_bundle(bundle)
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "d"))
    (bundle / "spatial.onnx.data").write_bytes(b"\0" * 16)
    with pytest.raises(BundleError, match="external weights"):
        read_bundle(bundle)
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "e"))
    (bundle / "labels.txt").write_text("a\nb\na\nc\n")
    with pytest.raises(BundleError, match="unique"):
        read_bundle(bundle)
