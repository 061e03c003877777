"""Many publishers, one consumer: Subscriber([...]), `twostream subscribe --connect A --connect B` and
`twostream view --connect A --connect B` merge real publishers on 127.0.0.1. With several endpoints
every source is named LABEL/NAME, so equal names on two hosts stay apart, and seq-gap loss is counted
per (endpoint, source)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import cv2
import numpy as np
import pytest
import zmq
from conftest import ROOT, free_port

from stream.clients.client import Endpoint, Prediction, Status, Subscriber, parse_endpoints
from stream.core.config import PublishSettings
from stream.core.errors import ConfigError
from stream.core.policy import PolicySettings
from stream.runtime.decider import Decider
from stream.runtime.events import WindowResult
from stream.runtime.publisher import Publisher

LABELS = ("a", "b", "c")


class Host:
    """A real publisher (Decider + Publisher on its own TCP port) with one source named `cam`."""

    def __init__(self, ctx: zmq.Context, label_index: int):
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.pub = Publisher(PublishSettings(endpoint=self.endpoint), ctx=ctx)
        self.decider = Decider(["cam"], labels=LABELS, policy=PolicySettings(kind="none"), top=1, flow_length=4)
        self.fused = [0.1] * len(LABELS)
        self.fused[label_index] = 0.8

    def window(self, frame: int, send: bool = True) -> None:
        t = time.time()
        r = WindowResult(source=0, frame=frame, t_capture=t, t_flow=t, t_infer_start=t, t_infer_end=t,
                         spatial=self.fused, temporal=self.fused, fused=self.fused, batch=1)
        for msg in self.decider.decide(r):
            if send:
                self.pub.send(msg)

    def probe(self) -> None:
        self.pub.send(self.decider.status(0, {"state": "live"}))

    def close(self) -> None:
        self.pub.close()


def _join(sub: Subscriber, hosts: list[Host], names: set[str]) -> None:
    """Slow joiner: send status probes until a status from every host arrived."""
    seen: set[str] = set()
    deadline = time.time() + 10
    while seen != names:
        assert time.time() < deadline, f"only {seen} joined"
        for h in hosts:
            h.probe()
        try:
            while True:
                msg = sub.recv(timeout=0.05)
                if isinstance(msg, Status):
                    seen.add(msg.source)
        except TimeoutError:
            pass


def test_subscriber_merges_two_publishers_with_the_same_source_name():
    ctx = zmq.Context()
    a, b = Host(ctx, 0), Host(ctx, 1)
    sub = Subscriber([f"north={a.endpoint}", b.endpoint], status=True, timeout=5, ctx=ctx)
    b_label = b.endpoint.removeprefix("tcp://")  # no LABEL=: the endpoint without its scheme
    try:
        _join(sub, [a, b], {"north/cam", f"{b_label}/cam"})
        skipped = {3, 4, 5}
        for i in range(10):  # interleaved: a's seq would look like gaps in b's if counted per name only
            a.window(10 + 5 * i)
            b.window(10 + 5 * i, send=i not in skipped)  # b decides but does not send: a real seq gap
        got: dict[str, list[Prediction]] = {}
        while sum(len(v) for v in got.values()) < 10 + 10 - len(skipped):
            msg = sub.recv()
            if isinstance(msg, Prediction):
                got.setdefault(msg.source, []).append(msg)
    finally:
        sub.close()
        a.close()
        b.close()
        ctx.term()
    assert set(got) == {"north/cam", f"{b_label}/cam"}
    assert [p.seq for p in got["north/cam"]] == list(range(10))
    assert [p.seq for p in got[f"{b_label}/cam"]] == [i for i in range(10) if i not in skipped]
    assert {p.label for p in got["north/cam"]} == {"a"} and {p.label for p in got[f"{b_label}/cam"]} == {"b"}
    assert got["north/cam"][0].raw["source"] == "north/cam"  # the payload carries the merged name too
    assert sub.lost == {f"{b_label}/cam": len(skipped)}


def test_merged_source_filter_by_name_or_label_slash_name():
    ctx = zmq.Context()
    a, b = Host(ctx, 0), Host(ctx, 1)
    only_a = Subscriber([f"x={a.endpoint}", f"y={b.endpoint}"], sources=["x/cam"], status=True, timeout=0.3, ctx=ctx)
    both = Subscriber([f"x={a.endpoint}", f"y={b.endpoint}"], sources=["cam"], status=True, timeout=5, ctx=ctx)
    try:
        _join(both, [a, b], {"x/cam", "y/cam"})
        _join(only_a, [a, b], {"x/cam"})
        a.window(10)
        b.window(10)
        seen = set()
        try:
            while True:
                msg = only_a.recv()
                if isinstance(msg, Prediction):
                    seen.add(msg.source)
        except TimeoutError:
            pass
    finally:
        only_a.close()
        both.close()
        a.close()
        b.close()
        ctx.term()
    assert seen == {"x/cam"}


def test_endpoint_lists_are_checked():
    assert parse_endpoints(["tcp://127.0.0.1:5555", "shed=tcp://10.0.0.8:5555"]) == [
        Endpoint("tcp://127.0.0.1:5555", "127.0.0.1:5555"), Endpoint("tcp://10.0.0.8:5555", "shed")]
    assert parse_endpoints("ipc:///tmp/a=b.sock") == [Endpoint("ipc:///tmp/a=b.sock", "/tmp/a=b.sock")]
    for values, match in [(["tcp://127.0.0.1:1", "tcp://127.0.0.1:1"], "endpoint 'tcp://127.0.0.1:1' is given twice"),
                          (["x=tcp://127.0.0.1:1", "x=tcp://127.0.0.1:2"], "label 'x' is given twice"),
                          (["a/b=tcp://127.0.0.1:1"], "label 'a/b' must be"),
                          (["x=127.0.0.1:1"], "expected tcp://HOST:PORT"), ([], "at least one")]:
        with pytest.raises(ConfigError, match=match):
            parse_endpoints(values)


@pytest.mark.parametrize("command,args,message", [
    ("subscribe", ["--connect", "tcp://127.0.0.1:5999", "--connect", "tcp://127.0.0.1:5999"],
     "endpoint 'tcp://127.0.0.1:5999' is given twice"),
    ("subscribe", ["--connect", "a=tcp://127.0.0.1:5998", "--connect", "b=tcp://127.0.0.1:5999", "--source", "c/cam"],
     "no --connect is labelled 'c'"),
    ("view", ["--connect", "x=tcp://127.0.0.1:5998", "--connect", "x=tcp://127.0.0.1:5999"],
     "label 'x' is given twice"),
])
def test_cli_refuses_repeated_publishers_in_one_line(command, args, message):
    r = subprocess.run([sys.executable, "-m", "stream.cli", command, *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_subscribe_merges_two_real_pipelines(tiny_bundle):
    """Two real `twostream run` processes, both with a source named `demo`, merged by one `twostream subscribe`."""
    eps = [f"tcp://127.0.0.1:{free_port()}" for _ in range(2)]
    sub = subprocess.Popen([sys.executable, "-m", "stream.cli", "subscribe", "--connect", f"one={eps[0]}",
                            "--connect", f"two={eps[1]}", "--json", "--until-eos", "--timeout", "60"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # the subscriber is connected (it retries every 20 ms) before the publishers bind
    runs = [subprocess.Popen([sys.executable, "-m", "stream.cli", "run", "-q", "--model", str(tiny_bundle),
                              "--pace", "fast", "--max-frames", "40", "--engine", "onnxruntime", "--publish", ep,
                              f"demo={ROOT / 'assets' / 'demo.mp4'}"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for ep in eps]
    try:
        out, err = sub.communicate(timeout=120)
        for r in runs:
            assert r.wait(60) == 0, r.stderr.read()
    finally:
        for p in [sub, *runs]:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert sub.returncode == 0, err
    msgs = [json.loads(line) for line in out.splitlines()]
    preds: dict[str, list[int]] = {}
    eos = {}
    for m in msgs:
        if m["event"] == "prediction":
            preds.setdefault(m["source"], []).append(m["seq"])
        elif m["event"] == "eos":
            eos[m["source"]] = m
    assert set(preds) == {"one/demo", "two/demo"} and set(eos) == {"one/demo", "two/demo"}
    for name, seqs in preds.items():
        assert seqs == list(range(len(seqs))) and len(seqs) == eos[name]["windows"] > 0
        assert eos[name]["frames"] == 40
    assert "lost" not in err, err


def _jpeg(value: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((16, 24, 3), value, np.uint8))
    assert ok
    return buf.tobytes()


def test_view_merges_two_publishers(tmp_path):
    from stream.clients.view_server import ViewServer

    ctx = zmq.Context()
    a, b = Host(ctx, 0), Host(ctx, 2)
    server = ViewServer([f"a={a.endpoint}", f"b={b.endpoint}"], port=0)
    server.start()
    jpegs = {"a": _jpeg(30), "b": _jpeg(220)}

    def state() -> dict:
        with urllib.request.urlopen(server.url + "state", timeout=5) as r:
            return json.loads(r.read())

    try:
        deadline = time.time() + 15
        frame = 10
        while time.time() < deadline:  # slow joiner: keep publishing until both tiles have a label and a frame
            for h, name in ((a, "a"), (b, "b")):
                h.window(frame)
                h.pub.send_preview(h.decider.preview(0, frame=frame, t_capture=time.time(), width=24, height=16),
                                   jpegs[name])
            frame += 5
            snap = {s["source"]: s for s in state()["sources"]}
            if set(snap) == {"a/cam", "b/cam"} and all(s["preview"] for s in snap.values()):
                break
            time.sleep(0.1)
        snap = {s["source"]: s for s in state()["sources"]}
        assert set(snap) == {"a/cam", "b/cam"}
        assert snap["a/cam"]["label"] == "a" and snap["b/cam"]["label"] == "c"
        for name in ("a", "b"):
            with urllib.request.urlopen(server.url + f"frame/{name}%2Fcam.jpg", timeout=5) as r:
                assert r.read() == jpegs[name]
        assert state()["endpoint"] == f"{a.endpoint}, {b.endpoint}"
    finally:
        server.close()
        a.close()
        b.close()
        ctx.term()
