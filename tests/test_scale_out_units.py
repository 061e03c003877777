"""Scale-out logic without servers: the outage policy of the inference stage (fake clock), URL and
settings checks of the triton engine and the MQTT bridge. The real-server tests are in
test_scale_out_triton.py and test_scale_out_mqtt.py."""
from __future__ import annotations

import pytest

from engines.base import EngineUnavailable
from stream.core.errors import ConfigError
from stream.runtime.outage import OutageGuard


class FakeStats:
    def __init__(self, n):
        self.cols = {i: {} for i in range(n)}

    def set(self, i, key, value):
        self.cols[i][key] = value


class Clock:
    def __init__(self):
        self.t = 100.0
        self.slept = []

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.slept.append(s)
        self.t += s


class Server:
    """Up or down; counts the calls that reached it."""

    def __init__(self):
        self.up = True
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if not self.up:
            raise EngineUnavailable("grpc://127.0.0.1:1: server not reachable")
        return "scores"


def guard(clock, stats=None, **kw):
    return OutageGuard(stats, 2, clock=clock, sleep=clock.sleep, **kw)


def test_live_batches_are_dropped_without_touching_the_network_between_backoff_attempts():
    clock, server, stats = Clock(), Server(), FakeStats(2)
    g = guard(clock, stats, backoff_max=1.0)
    assert g.run(server, wait=False) == "scores" and not g.down
    server.up = False
    assert g.run(server, wait=False) is None  # the failing call marks the engine down
    assert g.down and server.calls == 2 and stats.cols[0]["engine_down"] == stats.cols[1]["engine_down"] == 1
    for _ in range(5):  # within the first backoff (0.1 s): no network attempt at all
        assert g.run(server, wait=False) is None
    assert server.calls == 2
    attempts = []
    for _ in range(60):  # 6 s of live batches every 0.1 s: attempts back off 0.1, 0.2, 0.4, 0.8, 1.0, 1.0 ...
        clock.t += 0.1
        before = server.calls
        g.run(server, wait=False)
        if server.calls > before:
            attempts.append(round(clock.t - 100.0, 1))
    gaps = [round(b - a, 1) for a, b in zip(attempts, attempts[1:], strict=False)]
    want = [0.2, 0.4, 0.8] + [1.0] * (len(gaps) - 3)  # each gap = the backoff, up to one 0.1 s batch tick late
    assert len(gaps) >= 6 and all(0 <= g - w <= 0.1 + 1e-6 for g, w in zip(gaps, want, strict=True)), gaps
    server.up = True
    clock.t += 1.0
    assert g.run(server, wait=False) == "scores" and not g.down
    assert stats.cols[0]["engine_down"] == 0 and g.outages == 1


def test_file_batches_wait_for_the_server_then_run():
    clock, server = Clock(), Server()
    g = guard(clock, backoff_max=0.5, file_wait=60.0)
    server.up = False
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] == 5:  # the server is back at the 5th attempt
            server.up = True
        return server()

    assert g.run(flaky, wait=True) == "scores"
    assert calls["n"] == 5 and not g.down
    assert clock.slept == pytest.approx([0.1, 0.2, 0.4, 0.5])  # the backoff, capped


def test_file_batches_wait_at_most_outage_file_wait_then_drop():
    clock, server = Clock(), Server()
    g = guard(clock, backoff_max=2.0, file_wait=10.0)
    server.up = False
    t0 = clock.t
    assert g.run(server, wait=True) is None
    assert 10.0 <= clock.t - t0 <= 10.0 + 2.0 and g.down
    stop = {"now": True}
    g2 = OutageGuard(None, 1, clock=clock, sleep=clock.sleep, stop=lambda: stop["now"])
    server2 = Server()
    server2.up = False
    assert g2.run(server2, wait=True) is None and server2.calls == 1  # stopping: no waiting


@pytest.mark.parametrize("url, address, tls", [
    ("grpc://127.0.0.1:8001", "127.0.0.1:8001", False),
    ("grpcs://gpu.example:443", "gpu.example:443", True),
    ("grpc://gpu", "gpu:8001", False),
    ("grpc://[::1]:9000", "[::1]:9000", False),
])
def test_triton_url(url, address, tls):
    from engines.triton import parse_triton_url

    assert parse_triton_url(url) == (address, tls)


@pytest.mark.parametrize("url", ["http://host:8000", "host:8001", "grpc://user:pw@host:8001", "grpc://h:99999",
                                 "grpc://host:8001/v2"])
def test_bad_triton_url_is_a_config_error(url):
    from engines.triton import parse_triton_url

    with pytest.raises(ConfigError) as exc:
        parse_triton_url(url)
    assert "triton_url" in str(exc.value) and "pw" not in str(exc.value)


def test_engine_settings_reject_bad_values_and_unknown_keys():
    from stream.core.config import settings_from_dict

    s = settings_from_dict({"engine": {"kind": "triton", "triton_url": "grpc://h:1", "triton_timeout": 2}})
    assert s.engine.kind == "triton" and s.engine.triton_timeout == 2.0
    with pytest.raises(ConfigError, match="triton_timeout"):
        settings_from_dict({"engine": {"triton_timeout": 0}})
    with pytest.raises(ConfigError, match="triton_ur"):
        settings_from_dict({"engine": {"triton_ur": "grpc://h:1"}})


@pytest.mark.parametrize("url, expect", [
    ("mqtt://127.0.0.1:1883", ("127.0.0.1", 1883, False)),
    ("mqtts://broker.lan", ("broker.lan", 8883, True)),
])
def test_broker_url(url, expect):
    from stream.clients.mqtt_bridge import parse_broker

    assert parse_broker(url) == expect


@pytest.mark.parametrize("url, culprit", [("tcp://h:1883", "expected mqtt://"),
                                          ("mqtt://u:secret@h:1883", "environment")])
def test_bad_broker_url_is_a_config_error(url, culprit):
    from stream.clients.mqtt_bridge import parse_broker

    with pytest.raises(ConfigError) as exc:
        parse_broker(url)
    assert culprit in str(exc.value) and "secret" not in str(exc.value)


def test_runtime_does_not_import_tritonclient_or_paho_unless_asked():
    """A camera box without the [triton]/[mqtt] extras runs every other engine and command."""
    import subprocess
    import sys

    from conftest import ROOT

    code = ("import sys, stream.runtime.supervisor, stream.runtime.inference, engines.loader, stream.cli, "
            "stream.cli.bridge, engines.cmd_export_triton, stream.clients.mqtt_bridge; "
            "stream.cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tritonclient', 'paho', 'grpc')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
