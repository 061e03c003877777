"""The wire module (stream.core.wire): schema-1 payloads byte for byte as published, topics, validation,
endpoint checks; and the data path decide -> publish (stream.runtime.decider, stream.runtime.publisher)
over a real ZeroMQ socket."""
from __future__ import annotations

import json
import time

import pytest
import zmq
from conftest import free_port

from stream.core.config import PublishSettings
from stream.core.errors import ConfigError
from stream.core.policy import PolicySettings
from stream.core.wire import (
    Change,
    EndOfStream,
    LabelScore,
    MessageError,
    Prediction,
    Preview,
    Status,
    check_endpoint,
    decode_message,
    decode_preview,
    encode,
    encode_message,
    parse_topic,
    topic_for,
)

# Payloads exactly as the publisher wrote them before the wire module existed (field order included).
PREDICTION = (b'{"schema":1,"event":"prediction","source":"cam1","seq":12,"frame":70,"first_frame":66,'
              b'"t_capture":1795305940.870001,"t_publish":1795305940.91,"latency_ms":38.2,'
              b'"stages_ms":{"capture_to_flow":6.6,"queue":12.1,"inference":17.9,"publish":1.6},"batch":2,'
              b'"label":"bend","score":0.93,"top":[{"label":"bend","score":0.93},{"label":"wave1","score":0.04}],'
              b'"fused":{"label":"bend","score":0.95},'
              b'"streams":{"spatial":{"label":"bend","score":0.88},"temporal":{"label":"jack","score":0.97}}}')
PREDICTION_GAP = PREDICTION[:-1] + b',"gap":{"frames":31,"seconds":1.25}}'
CHANGE = (b'{"schema":1,"event":"change","source":"cam1","from":null,"to":"bend","frame":70,'
          b'"t_capture":1795305940.87,"score":0.93,"seq":0}')
EOS = b'{"schema":1,"event":"eos","source":"cam1","frames":342,"windows":67,"dropped":0,"windows_dropped":0}'
EOS_ERROR = (b'{"schema":1,"event":"eos","source":"cam1","frames":12,"windows":1,"dropped":3,"windows_dropped":1,'
             b'"error":"truncated file"}')
STATUS = (b'{"schema":1,"event":"status","source":"cam1","state":"live","frames":120,"fps":29.97,"dropped":0,'
          b'"windows":22,"windows_dropped":0,"reconnects":0,"attempts":1,"last_error":"","engine":"onnxruntime-cpu",'
          b'"url":"rtsp://10.0.0.5/stream1"}')


@pytest.mark.parametrize("topic,payload", [(b"twostream/cam1/", PREDICTION), (b"twostream/cam1/", PREDICTION_GAP),
                                           (b"twostream/cam1/", CHANGE), (b"twostream/cam1/", EOS),
                                           (b"twostream/cam1/", EOS_ERROR), (b"twostream/cam1/status", STATUS)])
def test_published_payloads_decode_and_encode_back_byte_for_byte(topic, payload):
    msg = decode_message(topic, payload)
    assert encode_message(msg) == [topic, payload]
    assert msg.raw == json.loads(payload)
    assert type(msg).from_payload(msg.to_payload()) == msg


def test_decoded_fields():
    p = decode_message(b"twostream/cam1/", PREDICTION_GAP)
    assert isinstance(p, Prediction)
    assert (p.source, p.seq, p.frame, p.first_frame, p.batch, p.label, p.score) == ("cam1", 12, 70, 66, 2, "bend", 0.93)
    assert p.top == (LabelScore("bend", 0.93), LabelScore("wave1", 0.04))
    assert p.spatial == LabelScore("bend", 0.88) and p.temporal == LabelScore("jack", 0.97)
    assert p.fused == LabelScore("bend", 0.95) and p.gap == {"frames": 31, "seconds": 1.25}
    c = decode_message(b"twostream/cam1/", CHANGE)
    assert isinstance(c, Change) and (c.from_label, c.to_label, c.seq) == (None, "bend", 0)
    e = decode_message(b"twostream/cam1/", EOS_ERROR)
    assert isinstance(e, EndOfStream) and (e.frames, e.windows, e.dropped, e.windows_dropped, e.error) == \
        (12, 1, 3, 1, "truncated file")
    s = decode_message(b"twostream/cam1/status", STATUS)
    assert isinstance(s, Status) and s.state == "live" and s.details["fps"] == 29.97
    assert list(s.details)[:2] == ["frames", "fps"]


def test_minimal_prediction_without_optional_fields_round_trips():
    """first_frame, batch and fused are optional for a reader (older publishers); absent stays absent."""
    doc = json.loads(PREDICTION)
    for key in ("first_frame", "batch", "fused"):
        del doc[key]
    p = Prediction.from_payload(doc)
    assert p.first_frame is None and p.batch is None and p.fused is None
    assert encode(p.to_payload()) == encode(doc)


@pytest.mark.parametrize("topic,edit,match", [
    (b"twostream/cam2/", {}, "does not match source"),
    (b"twostream/cam1", {}, "is not twostream/<source>/"),
    (b"other/cam1/", {}, "is not twostream/<source>/"),
    (b"\xff", {}, "not UTF-8"),
    (b"twostream/cam1/", {"schema": 2}, "unsupported schema 2"),
    (b"twostream/cam1/", {"event": "other"}, "unknown event 'other'"),
    (b"twostream/cam1/", {"event": ["prediction"]}, "unknown event"),
    (b"twostream/cam1/", {"seq": "12"}, "seq must be an integer"),
    (b"twostream/cam1/", {"seq": True}, "seq must be an integer"),
    (b"twostream/cam1/", {"score": 1e400}, "finite number"),
    (b"twostream/cam1/", {"batch": 2.5}, "batch must be an integer"),
    (b"twostream/cam1/", {"fused": "bend"}, "fused must be an object"),
    (b"twostream/cam1/", {"top": [{"label": "a"}]}, "top\\[\\] lacks 'score'"),
    (b"twostream/cam1/", {"gap": 3}, "gap must be an object"),
])
def test_malformed_messages_raise_message_error(topic, edit, match):
    doc = dict(json.loads(PREDICTION), **edit)
    with pytest.raises(MessageError, match=match):
        decode_message(topic, json.dumps(doc).encode())


def test_from_payload_checks_the_event_and_schema():
    with pytest.raises(MessageError, match="event 'eos' is not 'prediction'"):
        Prediction.from_payload(json.loads(EOS))
    with pytest.raises(MessageError, match="unsupported schema"):
        Change.from_payload(dict(json.loads(CHANGE), schema=None))
    with pytest.raises(MessageError, match="change.from must be a label or null"):
        Change.from_payload(dict(json.loads(CHANGE), **{"from": 3}))
    with pytest.raises(MessageError, match="lacks 'state'"):
        Status.from_payload({"schema": 1, "event": "status", "source": "cam"})


def test_topics():
    assert topic_for("cam1") == b"twostream/cam1/"
    assert topic_for("cam1", "status") == b"twostream/cam1/status"
    assert parse_topic(b"twostream/cam1/") == ("cam1", "")
    assert parse_topic("twostream/cam1/preview") == ("cam1", "preview")
    for bad in (b"twostream/", b"twostream//", b"twostream/cam1", b"twostreamx/cam1/"):
        with pytest.raises(MessageError):
            parse_topic(bad)


def test_preview_header_and_jpeg():
    header = Preview(source="cam1", frame=40, t_capture=1795305940.5, width=320, height=180)
    head = encode(header.to_payload())
    assert head == (b'{"schema":1,"event":"preview","source":"cam1","frame":40,"t_capture":1795305940.5,'
                    b'"width":320,"height":180}')
    jpeg = b"\xff\xd8\xff\xe0rest"
    assert decode_preview([b"twostream/cam1/preview", head, jpeg]) == (header, jpeg)
    for parts, match in [([b"twostream/cam2/preview", head, jpeg], "does not match"),
                         ([b"twostream/cam1/", head, jpeg], "does not match"),
                         ([b"twostream/cam1/preview", head, b"<html>"], "not a JPEG"),
                         ([b"twostream/cam1/preview", head], "3 parts"),
                         ([b"twostream/cam1/preview", head.replace(b'"frame":40', b'"frame":4.5'), jpeg],
                          "frame must be an integer"),
                         ([b"twostream/cam1/preview", b"[1]", jpeg], "not a JSON object")]:
        with pytest.raises(MessageError, match=match):
            decode_preview(parts)


def test_check_endpoint():
    for ok in ("tcp://127.0.0.1:5555", "tcp://*:1", "tcp://[::1]:65535", "tcp://cam-host.local:80", "ipc:///tmp/x"):
        assert check_endpoint(ok) == ok
    for bad, match in [("127.0.0.1:5555", "expected tcp://HOST:PORT"), ("tcp://127.0.0.1:0", "port must be"),
                       ("tcp://127.0.0.1:70000", "port must be"), ("udp://x:1", "expected")]:
        with pytest.raises(ConfigError, match=match) as err:
            check_endpoint(bad, "--connect")
        assert str(err.value).startswith(f"--connect {bad!r}") and "\n" not in str(err.value)


def test_public_shim_exports_the_wire_types():
    import stream.client as public
    import stream.core.wire as wire

    for name in ("Prediction", "Change", "EndOfStream", "Status", "MessageError", "decode_message", "LabelScore"):
        assert getattr(public, name) is getattr(wire, name)
    from stream.client import Subscriber  # noqa: F401


# --- decide -> publish over a real socket --------------------------------------------------------------
def _result(source: int, frame: int, fused: list[float], *, gap_frames: int = 0, t: float | None = None):
    from stream.runtime.events import WindowResult

    t = time.time() - 0.05 if t is None else t
    return WindowResult(source=source, frame=frame, t_capture=t, t_flow=t + 0.01, t_infer_start=t + 0.02,
                        t_infer_end=t + 0.03, spatial=[0.6, 0.3, 0.1], temporal=[0.1, 0.2, 0.7], fused=fused,
                        batch=1, gap_frames=gap_frames, gap_seconds=0.5 if gap_frames else 0.0)


def test_decider_and_publisher_send_schema_1_over_a_real_socket():
    from stream.clients.client import Subscriber
    from stream.runtime.decider import Decider
    from stream.runtime.publisher import Publisher

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    pub = Publisher(PublishSettings(endpoint=endpoint), ctx=ctx)
    decider = Decider(["cam", "door"], labels=("a", "b", "c"), policy=PolicySettings(kind="ema", ema_alpha=0.5),
                      top=2, flow_length=4)
    sub = Subscriber(endpoint, status=True, timeout=5, ctx=ctx)
    try:
        while True:  # slow joiner: status until the subscription is live
            pub.send(decider.status(0, {"state": "starting"}))
            try:
                if isinstance(sub.recv(timeout=0.1), Status):
                    break
            except TimeoutError:
                pass
        # ema 0.5 by hand: [.9,.1,0] -> a ; then [.55,.45,0] -> a ; then [.275,.725,0] -> b (change) ;
        # a gap resets the smoothing: [.9,.1,0] -> a at once (change)
        windows = [_result(0, 10, [0.9, 0.1, 0.0]), _result(1, 10, [0.0, 0.0, 1.0]), _result(0, 15, [0.2, 0.8, 0.0]),
                   _result(0, 20, [0.0, 1.0, 0.0]), _result(0, 45, [0.9, 0.1, 0.0], gap_frames=20)]
        sent = [pub.send(m) for r in windows for m in decider.decide(r)]
        sent.append(pub.send(decider.end(0, frames=47, dropped=1, windows_dropped=0, error="")))
        got = []
        while len(got) < len(sent):
            m = sub.recv()
            if not isinstance(m, Status):  # a late slow-joiner probe
                got.append(m)
    finally:
        sub.close()
        pub.close()
        ctx.term()
    assert [m.raw for m in got] == sent  # what was sent is what arrived, and the run summary sees the same
    summary = [(type(m).__name__, m.source, getattr(m, "seq", None)) for m in got]
    assert summary == [("Change", "cam", 0), ("Prediction", "cam", 0), ("Change", "door", 0), ("Prediction", "door", 0),
                       ("Prediction", "cam", 1), ("Change", "cam", 2), ("Prediction", "cam", 2),
                       ("Change", "cam", 3), ("Prediction", "cam", 3), ("EndOfStream", "cam", None)]
    changes = [(m.from_label, m.to_label, m.score) for m in got if isinstance(m, Change)]
    assert changes == [(None, "a", 0.9), (None, "c", 1.0), ("a", "b", 0.725), ("b", "a", 0.9)]
    preds = [m for m in got if isinstance(m, Prediction) and m.source == "cam"]
    assert [p.label for p in preds] == ["a", "a", "b", "a"]
    assert preds[1].top == (LabelScore("a", 0.55), LabelScore("b", 0.45))  # smoothed, best first, top=2
    assert preds[1].fused == LabelScore("b", 0.8)  # the window's own fused top-1
    assert preds[1].spatial == LabelScore("a", 0.6) and preds[1].temporal == LabelScore("c", 0.7)
    assert [p.first_frame for p in preds] == [6, 11, 16, 41]
    assert [p.gap for p in preds] == [None, None, None, {"frames": 20, "seconds": 0.5}]
    assert all(p.stages_ms == {"capture_to_flow": 10.0, "queue": 10.0, "inference": 10.0,
                               "publish": pytest.approx(p.latency_ms - 30.0, abs=0.002)} for p in preds)
    assert all(40.0 < p.latency_ms < 5000.0 for p in preds)
    eos = got[-1]
    assert (eos.frames, eos.windows, eos.dropped, eos.windows_dropped, eos.error) == (47, 4, 1, 0, "")


def test_publisher_bind_failure_is_one_line_config_error():
    from stream.runtime.publisher import Publisher

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    first = Publisher(PublishSettings(endpoint=endpoint), ctx=ctx)
    try:
        with pytest.raises(ConfigError, match=r"--publish .*cannot bind") as err:
            Publisher(PublishSettings(endpoint=endpoint), ctx=ctx)
        assert "\n" not in str(err.value)
        with pytest.raises(ConfigError, match="expected tcp://HOST:PORT"):
            Publisher(PublishSettings(endpoint="127.0.0.1:1"), ctx=ctx)
    finally:
        first.close()
        ctx.term()


def test_decider_publishes_none_decisions_by_name():
    """The policy's "none" (below [policy] min_score) is published as the label "none", with change events."""
    from stream.runtime.decider import Decider

    decider = Decider(["cam"], labels=("a", "b", "c"), policy=PolicySettings(kind="none", min_score=0.6), top=1,
                      flow_length=4)
    rows = ([0.9, 0.1, 0], [0.55, 0.45, 0], [0.2, 0.8, 0])
    out = [m for fused in rows for m in decider.decide(_result(0, 10, fused))]
    assert [(type(m).__name__, m.to_payload().get("label") or m.to_payload()["to"]) for m in out] == [
        ("Change", "a"), ("Prediction", "a"), ("Change", "none"), ("Prediction", "none"), ("Change", "b"),
        ("Prediction", "b")]
    assert [m.from_label for m in out if isinstance(m, Change)] == [None, "a", "none"]
    assert out[3].score == 0.55  # the score of the class that fell short
