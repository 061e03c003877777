"""`twostream bridge mqtt` against a REAL Mosquitto broker on 127.0.0.1 (Debian's, scripts/system-deps.sh),
fed by a real `twostream run` over ZeroMQ; what arrives is read with paho-mqtt, as any MQTT client would."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, free_port

from stream.clients.client import Change, EndOfStream

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
PASSWD = shutil.which("mosquitto_passwd")
USER, PASSWORD = "alice", "s3cret-pw"


class Broker:
    """mosquitto with a generated config: loopback only, password file, no persistence (a restart loses
    retained messages, the worst case for the bridge)."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.port = free_port()
        subprocess.run([PASSWD, "-b", "-c", str(directory / "passwd"), USER, PASSWORD], check=True, timeout=30)
        (directory / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous false\npassword_file {directory / 'passwd'}\n"
            "persistence false\n"
            # as root mosquitto drops to user "mosquitto", which cannot read pytest's 0700 tmp dir
            + ("user root\n" if os.geteuid() == 0 else ""))
        self.proc = None

    def start(self) -> "Broker":
        log = open(self.dir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.dir / "mosquitto.conf")], stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        import socket

        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


@pytest.fixture()
def broker(tmp_path):
    if MOSQUITTO is None or PASSWD is None:
        pytest.skip("mosquitto is not installed (scripts/system-deps.sh installs it as root)")
    b = Broker(tmp_path).start()
    yield b
    b.kill()


class Listener:
    """A paho client recording (topic, payload, retained) of everything under the given filters."""

    def __init__(self, broker: Broker, *filters: str):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        self.client.username_pw_set(USER, PASSWORD)

        def on_connect(client, userdata, flags, rc, props=None):
            for f in filters:
                client.subscribe(f, qos=1)
            self.ready.set()

        self.client.on_connect = on_connect
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload, bool(m.retain)))
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self.ready.wait(10)
        time.sleep(0.2)  # SUBACK

    def wait_for(self, predicate, timeout=20.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate(self.messages):
                return True
            time.sleep(0.05)
        return False

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def run_publishing(args: list[str], endpoint: str, timeout: float = 120.0):
    """`twostream run ARGS --publish ENDPOINT`, its messages read by this test's own subscriber until the EOS."""
    from stream.clients.client import Subscriber

    messages = []
    with Subscriber(endpoint, status=True, timeout=0.2) as sub:
        proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "run", *args, "--publish", endpoint], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                messages.append(sub.recv())
            except TimeoutError:
                if proc.poll() is not None:
                    break
                continue
            if isinstance(messages[-1], EndOfStream):
                break
        out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), messages


def start_bridge(broker: Broker, endpoint: str, *extra: str, password: str = PASSWORD) -> subprocess.Popen:
    env = dict(os.environ, TWOSTREAM_MQTT_USERNAME=USER, TWOSTREAM_MQTT_PASSWORD=password)
    return subprocess.Popen([sys.executable, "-m", "stream.cli", "bridge", "mqtt", "--broker", broker.url,
                             "--connect", endpoint, *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def stop_bridge(proc: subprocess.Popen) -> tuple[str, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=20)


def test_bridge_forwards_every_change_in_order_and_restores_retained_state_after_a_broker_restart(
        broker, shared_data, tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    listener = Listener(broker, "twostream/#", "homeassistant/#")
    bridge = start_bridge(broker, endpoint, "--discovery")
    try:
        assert listener.wait_for(lambda ms: ("twostream/_bridge/availability", b"online", False) in ms
                                 or any(t == "twostream/_bridge/availability" and p == b"online" for t, p, _ in ms))
        # the shipped model on the demo clip (wave1, bend, jack, wave2 in a row), policy "none" (each window's
        # argmax decides): the decided label changes several times
        cfg = tmp_path / "c.toml"
        cfg.write_text('[policy]\nkind = "none"\n')
        clip = ROOT / "assets" / "demo.mp4"
        proc, zmq_messages = run_publishing(["--config", str(cfg), "--pace", "fast", f"cam1={clip}"], endpoint)
        assert proc.returncode == 0, proc.stderr
        want = [m.to_payload() for m in zmq_messages if isinstance(m, Change)]
        assert len(want) >= 2, "the clip should give more than one change event"
        assert listener.wait_for(lambda ms: any(t == "twostream/cam1/eos" for t, _, _ in ms)), \
            (sorted({t for t, _, _ in listener.messages}), bridge.poll())
        got = [json.loads(p) for t, p, _ in listener.messages if t == "twostream/cam1/change"]
        assert got == want  # every change event, in order, as published on ZeroMQ
        preds = [json.loads(p) for t, p, _ in listener.messages if t == "twostream/cam1/prediction"]
        assert [p["seq"] for p in preds] == list(range(len(preds))) and preds
        eos = [m for m in zmq_messages if isinstance(m, EndOfStream)][0]
        assert json.loads([p for t, p, _ in listener.messages if t == "twostream/cam1/eos"][-1]) == eos.to_payload()
        discovery = [json.loads(p) for t, p, _ in listener.messages
                     if t == "homeassistant/sensor/twostream/cam1/config"]
        assert discovery and discovery[0]["state_topic"] == "twostream/cam1/state"
        assert discovery[0]["value_template"] == "{{ value_json.label }}"

        # broker restart without persistence: retained state is gone from the broker until the bridge is back
        t_kill = time.time()
        broker.kill()
        listener.close()
        broker.start()
        t_up = time.time()
        late = Listener(broker, "twostream/+/state", "homeassistant/#", "twostream/_bridge/availability")
        try:
            assert late.wait_for(lambda ms: any(t == "twostream/cam1/state" for t, _, _ in ms), timeout=20), \
                "the bridge did not republish the retained state after the broker restart"
            t_back = time.time()
            state = json.loads([p for t, p, _ in late.messages if t == "twostream/cam1/state"][-1])
            assert state["label"] == want[-1]["to"] and state["seq"] == want[-1]["seq"]
            assert late.wait_for(lambda ms: any(t.startswith("homeassistant/sensor/twostream/cam1") for t, _, _ in ms))
            assert late.wait_for(lambda ms: any(t.endswith("availability") and p == b"online" for t, p, _ in ms))
        finally:
            late.close()
        # and a client connecting now gets the state at once, from the broker's retained copy
        fresh = Listener(broker, "twostream/cam1/state")
        try:
            assert fresh.wait_for(lambda ms: ms and ms[0][2], timeout=5)  # retained flag set
        finally:
            fresh.close()
        print(f"\nbroker restart: down {t_up - t_kill:.2f} s; retained state back {t_back - t_up:.2f} s after "
              f"the broker was up")
    finally:
        out, err = stop_bridge(bridge)
    assert bridge.returncode == 0, err
    assert "s3cret" not in out + err  # credentials never logged


def test_wrong_password_is_a_clear_one_line_error(broker):
    proc = start_bridge(broker, f"tcp://127.0.0.1:{free_port()}", password="wrong-password")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert broker.url in lines[0] and "Not authorized" in lines[0] and "TWOSTREAM_MQTT_PASSWORD" in lines[0]
    assert "wrong-password" not in err


def test_unreachable_broker_is_a_one_line_error(tmp_path):
    url = f"mqtt://127.0.0.1:{free_port()}"
    proc = subprocess.run([sys.executable, "-m", "stream.cli", "bridge", "mqtt", "--broker", url], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert url in proc.stderr and "cannot connect" in proc.stderr
