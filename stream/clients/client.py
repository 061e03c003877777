"""Python client for twostream's ZeroMQ output.

    from stream.clients.client import Subscriber, Prediction

    with Subscriber("tcp://127.0.0.1:5555", sources=["cam1"]) as sub:
        for msg in sub:                      # Prediction, EndOfStream, Status or Change
            if isinstance(msg, Prediction):
                print(msg.source, msg.seq, msg.label, msg.score)

Malformed messages raise MessageError (a ValueError) from decode_message; the
Subscriber skips them and counts them in `malformed`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import zmq

SCHEMA = 1


class MessageError(ValueError):
    """A message that is not valid twostream schema-1 output."""


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float


@dataclass(frozen=True)
class Prediction:
    source: str
    seq: int
    frame: int
    label: str
    score: float
    top: tuple[LabelScore, ...]
    spatial: LabelScore
    temporal: LabelScore
    t_capture: float
    t_publish: float
    latency_ms: float
    stages_ms: dict = field(default_factory=dict)
    gap: dict | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class EndOfStream:
    source: str
    frames: int
    windows: int
    dropped: int
    error: str = ""
    raw: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Status:
    source: str
    state: str
    raw: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Change:
    source: str
    from_label: str | None
    to_label: str
    frame: int
    t_capture: float
    score: float
    raw: dict = field(default_factory=dict, repr=False, compare=False)


Message = Prediction | EndOfStream | Status | Change


def _get(d: dict, key: str, kind, what: str = ""):
    if key not in d:
        raise MessageError(f"{what or 'message'} lacks {key!r}")
    v = d[key]
    if kind is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise MessageError(f"{what or 'message'}.{key} must be a finite number, got {v!r}")
        return float(v)
    if kind is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise MessageError(f"{what or 'message'}.{key} must be an integer, got {v!r}")
        return v
    if not isinstance(v, kind):
        raise MessageError(f"{what or 'message'}.{key} must be {kind.__name__}, got {type(v).__name__}")
    return v


def _label_score(d: object, what: str) -> LabelScore:
    if not isinstance(d, dict):
        raise MessageError(f"{what} must be an object")
    return LabelScore(_get(d, "label", str, what), _get(d, "score", float, what))


def decode_message(topic: bytes, payload: bytes) -> Message:
    """Parse one [topic, payload] pair; raises MessageError for anything malformed."""
    try:
        t = topic.decode("utf-8")
        doc = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, int too long (>4300 digits)
        raise MessageError(f"not UTF-8 JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MessageError("payload is not a JSON object")
    if doc.get("schema") != SCHEMA:
        raise MessageError(f"unsupported schema {doc.get('schema')!r} (expected {SCHEMA})")
    source = _get(doc, "source", str)
    if not t.startswith(f"twostream/{source}/"):
        raise MessageError(f"topic {t!r} does not match source {source!r}")
    event = doc.get("event", "prediction")
    if event == "prediction":
        top = _get(doc, "top", list)
        streams = _get(doc, "streams", dict)
        gap = doc.get("gap")
        if gap is not None and not isinstance(gap, dict):
            raise MessageError("gap must be an object")
        stages = doc.get("stages_ms", {})
        return Prediction(
            source=source, seq=_get(doc, "seq", int), frame=_get(doc, "frame", int), label=_get(doc, "label", str),
            score=_get(doc, "score", float), top=tuple(_label_score(x, "top[]") for x in top),
            spatial=_label_score(streams.get("spatial"), "streams.spatial"),
            temporal=_label_score(streams.get("temporal"), "streams.temporal"),
            t_capture=_get(doc, "t_capture", float), t_publish=_get(doc, "t_publish", float),
            latency_ms=_get(doc, "latency_ms", float), stages_ms=stages if isinstance(stages, dict) else {},
            gap=gap, raw=doc)
    if event == "eos":
        error = doc.get("error", "")
        return EndOfStream(source=source, frames=_get(doc, "frames", int), windows=_get(doc, "windows", int),
                           dropped=_get(doc, "dropped", int), error=error if isinstance(error, str) else str(error),
                           raw=doc)
    if event == "status":
        return Status(source=source, state=_get(doc, "state", str), raw=doc)
    if event == "change":
        frm = doc.get("from")
        if frm is not None and not isinstance(frm, str):
            raise MessageError("change.from must be a label or null")
        return Change(source=source, from_label=frm, to_label=_get(doc, "to", str), frame=_get(doc, "frame", int),
                      t_capture=_get(doc, "t_capture", float), score=_get(doc, "score", float), raw=doc)
    raise MessageError(f"unknown event {event!r}")


class Subscriber:
    """SUB socket on twostream topics; iterate to receive decoded messages.

    sources: names to subscribe to (None: all). status: also receive status messages.
    timeout: seconds to wait for a message before iteration raises TimeoutError (None: forever).
    """

    def __init__(self, endpoint: str = "tcp://127.0.0.1:5555", *, sources: list[str] | None = None,
                 status: bool = False, timeout: float | None = None, ctx: zmq.Context | None = None,
                 curve: dict | None = None):
        self.ctx = ctx or zmq.Context.instance()
        self.socket = self.ctx.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RECONNECT_IVL, 20)  # join a publisher that starts later quickly
        if curve:  # {"public": ..., "secret": ..., "server": ...} z85 keys
            self.socket.curve_publickey = curve["public"]
            self.socket.curve_secretkey = curve["secret"]
            self.socket.curve_serverkey = curve["server"]
        prefixes = [f"twostream/{s}/" for s in sources] if sources else ["twostream/"]
        for p in prefixes:
            self.socket.setsockopt(zmq.SUBSCRIBE, p.encode())
        self.socket.connect(endpoint)
        self.status = status
        self.timeout = timeout
        self.malformed = 0
        self.last_seq: dict[str, int] = {}
        self.lost: dict[str, int] = {}  # predictions missed per source, from seq gaps

    def recv(self, timeout: float | None = None) -> Message:
        timeout = self.timeout if timeout is None else timeout
        while True:
            if timeout is not None and not self.socket.poll(int(timeout * 1000)):
                raise TimeoutError(f"no message within {timeout:g} s")
            parts = self.socket.recv_multipart()
            if parts[0].endswith(b"/preview"):  # 3-part JPEG previews are for `twostream view`
                continue
            if len(parts) != 2:
                self.malformed += 1
                continue
            try:
                msg = decode_message(parts[0], parts[1])
            except MessageError:
                self.malformed += 1
                continue
            if isinstance(msg, Status) and not self.status:
                continue
            if isinstance(msg, Prediction):
                last = self.last_seq.get(msg.source)
                if last is not None and msg.seq > last + 1:
                    self.lost[msg.source] = self.lost.get(msg.source, 0) + msg.seq - last - 1
                self.last_seq[msg.source] = msg.seq
            return msg

    def __iter__(self):
        while True:
            yield self.recv()

    def close(self) -> None:
        self.socket.close(0)

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
