"""TLS for the scale-out links, against real servers: the triton engine over grpcs:// to a tritonserver
that requires client certificates, and the MQTT bridge over mqtts:// to Mosquitto. Certificates are
made per session with the openssl command (a throwaway CA, a server certificate for 127.0.0.1, a client
certificate)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, free_port

OPENSSL = shutil.which("openssl")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    if OPENSSL is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("pki")

    def run(*args):
        subprocess.run([OPENSSL, *args], cwd=d, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=twostream test CA")
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ext in (("server", ["-extfile", "server.ext"]), ("client", [])):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
            f"/CN=twostream test {name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
            f"{name}.pem", "-days", "2", *ext)
    return {k: str(d / f) for k, f in (("ca", "ca.pem"), ("cert", "server.pem"), ("key", "server.key"),
                                        ("client_cert", "client.pem"), ("client_key", "client.key"))}


def test_triton_engine_over_mutual_tls(pki, tmp_path, tiny_bundle, twostream_cmd, shared_data):
    from engines.bundle import read_bundle
    from engines.onnxrt import OnnxRuntimeEngine
    from engines.triton import open_triton
    from engines.triton_repo import export_triton
    from engines.triton_server import LocalTritonServer, find_install
    from stream.core.config import EngineSettings

    install, why = find_install()
    if install is None:
        pytest.skip(f"tritonserver cannot run here: {why}")
    repo = tmp_path / "repo"
    export_triton(tiny_bundle, repo, prefix="tls_", kind="cpu")
    with LocalTritonServer(install, repo, log_path=tmp_path / "tritonserver.log",
                           tls={**pki, "mutual": True}).start() as server:
        assert server.url.startswith("grpcs://127.0.0.1:")
        bundle = read_bundle(tiny_bundle)
        options = EngineSettings(kind="triton", triton_url=server.url, triton_model_prefix="tls_",
                                 triton_ca_file=pki["ca"], triton_cert_file=pki["client_cert"],
                                 triton_key_file=pki["client_key"])
        engine = open_triton(bundle, "spatial", options)
        x = np.random.default_rng(1).standard_normal((3, *engine.input_shape)).astype(np.float32)
        np.testing.assert_allclose(engine.run(x), OnnxRuntimeEngine(bundle.spatial_file).run(x), atol=1e-4)
        engine.close()

        # no client certificate, or plain gRPC to the TLS port: refused at start, one line naming the URL
        clip = str(shared_data / "replay" / "mmaction2_test.avi")
        for name, url, extra in (("nocert", server.url, [f'triton_ca_file = "{pki["ca"]}"']),
                                 ("plain", server.url.replace("grpcs://", "grpc://"), [])):
            cfg = tmp_path / f"{name}.toml"
            cfg.write_text("\n".join(["[engine]", 'kind = "triton"', f'triton_url = "{url}"',
                                      'triton_model_prefix = "tls_"', "triton_timeout = 2.0", *extra]) + "\n")
            proc = subprocess.run([*twostream_cmd, "run", "--model", str(tiny_bundle), "--config", str(cfg), clip],
                                  cwd=ROOT, capture_output=True, text=True, timeout=60)
            assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
            assert url in proc.stderr and "not reachable" in proc.stderr


def test_mqtt_bridge_over_tls(pki, tmp_path):
    import paho.mqtt.client as mqtt

    mosquitto = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if mosquitto is None:
        pytest.skip("mosquitto is not installed (scripts/system-deps.sh installs it as root)")
    plain, tls = free_port(), free_port()
    (tmp_path / "m.conf").write_text(
        f"listener {plain} 127.0.0.1\nallow_anonymous true\n"
        f"listener {tls} 127.0.0.1\ncafile {pki['ca']}\ncertfile {pki['cert']}\nkeyfile {pki['key']}\n"
        "persistence false\nuser root\n")
    broker = subprocess.Popen([mosquitto, "-c", str(tmp_path / "m.conf")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    bridge = None
    try:
        time.sleep(0.5)
        got = []
        watcher = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        watcher.on_message = lambda c, u, m: got.append((m.topic, m.payload))
        watcher.on_connect = lambda c, u, f, rc, p=None: c.subscribe("twostream/#", qos=1)
        watcher.connect("127.0.0.1", plain)
        watcher.loop_start()
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        bridge = subprocess.Popen([sys.executable, "-m", "stream.cli", "bridge", "mqtt", "--broker",
                                   f"mqtts://127.0.0.1:{tls}", "--ca-file", pki["ca"], "--connect", endpoint],
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # the bridge's availability, published over TLS, reaches a client of the plain listener
        deadline = time.time() + 20
        while time.time() < deadline and ("twostream/_bridge/availability", b"online") not in got:
            time.sleep(0.05)
        assert ("twostream/_bridge/availability", b"online") in got, bridge.stderr.read() if bridge.poll() else got
        # and a publisher's message goes through the bridge over TLS
        import zmq

        ctx = zmq.Context.instance()
        pub = ctx.socket(zmq.PUB)
        pub.bind(endpoint)
        status = {"schema": 1, "event": "status", "source": "cam9", "state": "live", "frames": 3}
        deadline = time.time() + 20
        while time.time() < deadline and not any(t == "twostream/cam9/status" for t, _ in got):
            pub.send_multipart([b"twostream/cam9/status", json.dumps(status).encode()])
            time.sleep(0.2)
        pub.close(0)
        assert [json.loads(p) for t, p in got if t == "twostream/cam9/status"][0] == status
        watcher.loop_stop()
        watcher.disconnect()
        # without the CA, the broker's certificate is not trusted: one line naming the reason, no traceback
        proc = subprocess.run([sys.executable, "-m", "stream.cli", "bridge", "mqtt", "--broker",
                               f"mqtts://127.0.0.1:{tls}"], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "CERTIFICATE_VERIFY_FAILED" in proc.stderr
    finally:
        if bridge is not None:
            bridge.terminate()
            bridge.communicate(timeout=20)
        broker.kill()
        broker.wait(10)
    assert bridge.returncode == 0
