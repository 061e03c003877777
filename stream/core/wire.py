"""The published wire format (schema 1): topics, payload dataclasses, JSON encoding and endpoint checking.

Every party that writes or reads twostream's output uses this module: the publisher
(stream.runtime.publisher, fed by stream.runtime.decider), the Python client and
`twostream subscribe` (stream.clients.client), and the view (stream.clients.view_server).

Topics (ZeroMQ multipart, first part):
    twostream/<source>/          predictions, change events, end of stream
    twostream/<source>/status    status
    twostream/<source>/preview   JPEG previews: [topic, JSON header, JPEG bytes]

Payloads are UTF-8 JSON objects with "schema": 1 and "event": "prediction" | "change" | "eos" |
"status" | "preview". `X.from_payload(dict)` validates and raises MessageError for anything
malformed; `x.to_payload()` gives the dict exactly as published (field order included). Values are
published as the producer rounded them (stream.runtime.decider); this module adds no rounding.
Source names never contain "/" (stream.runtime.sources allows letters, digits, '_', '.', '-').
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from stream.core.errors import ConfigError

SCHEMA = 1
MAX_STREAMS = 16  # networks per prediction (a bundle has at most 8)
ROOT = "twostream/"  # every topic starts with it; subscribe to it for everything


class MessageError(ValueError):
    """A message that is not valid twostream schema-1 output."""


# --- topics ----------------------------------------------------------------------------------------
def topic_for(source: str, kind: str = "") -> bytes:
    """`twostream/<source>/` for predictions and events; `twostream/<source>/<kind>` for status/preview."""
    return f"{ROOT}{source}/{kind}".encode()


def parse_topic(topic: bytes | str) -> tuple[str, str]:
    """(source, kind) of a topic; kind is "" for predictions and events. MessageError when not a twostream topic."""
    if isinstance(topic, bytes):
        try:
            topic = topic.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageError(f"topic is not UTF-8: {exc}") from None
    if not topic.startswith(ROOT) or "/" not in topic[len(ROOT):]:
        raise MessageError(f"topic {topic!r} is not twostream/<source>/...")
    source, kind = topic[len(ROOT):].split("/", 1)
    if not source:
        raise MessageError(f"topic {topic!r} has no source")
    return source, kind


# --- JSON ------------------------------------------------------------------------------------------
def encode(payload: dict) -> bytes:
    """Compact JSON, no NaN/Infinity (not JSON; a consumer's parser may reject them)."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")


def decode_json(payload: bytes) -> dict:
    """The JSON object in a payload; MessageError for anything else."""
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, int too long (>4300 digits)
        raise MessageError(f"not UTF-8 JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MessageError("payload is not a JSON object")
    return doc


# --- field validation ------------------------------------------------------------------------------
def _get(d: dict, key: str, kind, what: str = ""):
    if key not in d:
        raise MessageError(f"{what or 'message'} lacks {key!r}")
    return _check(d[key], key, kind, what)


def _opt(d: dict, key: str, kind, what: str = ""):
    """An optional field: None when absent, validated when present."""
    return None if d.get(key) is None else _check(d[key], key, kind, what)


def _check(v, key: str, kind, what: str):
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


def _header(doc: object, event: str) -> str:
    """Checks common to every payload; returns its source."""
    if not isinstance(doc, dict):
        raise MessageError("payload is not a JSON object")
    if doc.get("schema") != SCHEMA:
        raise MessageError(f"unsupported schema {doc.get('schema')!r} (expected {SCHEMA})")
    source = _get(doc, "source", str)
    got = doc.get("event", "prediction")
    if got != event:
        raise MessageError(f"event {got!r} is not {event!r}")
    return source


# --- payloads --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float

    def to_payload(self) -> dict:
        return {"label": self.label, "score": self.score}

    @classmethod
    def from_payload(cls, d: object, what: str = "label score") -> "LabelScore":
        if not isinstance(d, dict):
            raise MessageError(f"{what} must be an object")
        return cls(_get(d, "label", str, what), _get(d, "score", float, what))


@dataclass(frozen=True)
class Prediction:
    """One window's decided label. `top`/`label`/`score` are after the decision policy, `fused` is the
    window's raw fused top-1, `streams` each network's top-1 by network name (bundle format 2: any names;
    two-stream bundles: spatial and temporal, also given as `spatial`/`temporal`, None when absent)."""

    source: str
    seq: int
    frame: int
    label: str
    score: float
    top: tuple[LabelScore, ...]
    spatial: LabelScore | None
    temporal: LabelScore | None
    t_capture: float
    t_publish: float
    latency_ms: float
    stages_ms: dict = field(default_factory=dict)
    gap: dict | None = None  # {"frames", "seconds"} on the first window after a reconnect
    first_frame: int | None = None
    batch: int | None = None
    fused: LabelScore | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)  # the payload as received
    streams: dict = field(default_factory=dict)  # {network name: LabelScore}; empty: spatial + temporal

    def to_payload(self) -> dict:
        p = {"schema": SCHEMA, "event": "prediction", "source": self.source, "seq": self.seq, "frame": self.frame}
        if self.first_frame is not None:
            p["first_frame"] = self.first_frame
        p.update({"t_capture": self.t_capture, "t_publish": self.t_publish, "latency_ms": self.latency_ms,
                  "stages_ms": dict(self.stages_ms)})
        if self.batch is not None:
            p["batch"] = self.batch
        p.update({"label": self.label, "score": self.score, "top": [x.to_payload() for x in self.top]})
        if self.fused is not None:
            p["fused"] = self.fused.to_payload()
        streams = self.streams or {"spatial": self.spatial, "temporal": self.temporal}
        p["streams"] = {name: x.to_payload() for name, x in streams.items()}
        if self.gap is not None:
            p["gap"] = dict(self.gap)
        return p

    @classmethod
    def from_payload(cls, doc: dict) -> "Prediction":
        source = _header(doc, "prediction")
        top = _get(doc, "top", list)
        streams = _get(doc, "streams", dict)
        gap = doc.get("gap")
        if gap is not None and not isinstance(gap, dict):
            raise MessageError("gap must be an object")
        stages = doc.get("stages_ms", {})
        fused = doc.get("fused")
        if not streams or len(streams) > MAX_STREAMS:
            raise MessageError(f"streams must name 1..{MAX_STREAMS} networks")
        named = {str(k): LabelScore.from_payload(v, f"streams.{k}") for k, v in streams.items()}
        return cls(
            source=source, seq=_get(doc, "seq", int), frame=_get(doc, "frame", int), label=_get(doc, "label", str),
            score=_get(doc, "score", float), top=tuple(LabelScore.from_payload(x, "top[]") for x in top),
            spatial=named.get("spatial"), temporal=named.get("temporal"), streams=named,
            t_capture=_get(doc, "t_capture", float), t_publish=_get(doc, "t_publish", float),
            latency_ms=_get(doc, "latency_ms", float), stages_ms=stages if isinstance(stages, dict) else {},
            gap=gap, first_frame=_opt(doc, "first_frame", int), batch=_opt(doc, "batch", int),
            fused=None if fused is None else LabelScore.from_payload(fused, "fused"), raw=doc)


@dataclass(frozen=True)
class Change:
    """The decided label of a source changed (sent just before the prediction with the same seq)."""

    source: str
    from_label: str | None  # None for a source's first decision
    to_label: str
    frame: int
    t_capture: float
    score: float
    seq: int | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    def to_payload(self) -> dict:
        p = {"schema": SCHEMA, "event": "change", "source": self.source, "from": self.from_label,
             "to": self.to_label, "frame": self.frame, "t_capture": self.t_capture, "score": self.score}
        if self.seq is not None:
            p["seq"] = self.seq
        return p

    @classmethod
    def from_payload(cls, doc: dict) -> "Change":
        source = _header(doc, "change")
        frm = doc.get("from")
        if frm is not None and not isinstance(frm, str):
            raise MessageError("change.from must be a label or null")
        return cls(source=source, from_label=frm, to_label=_get(doc, "to", str), frame=_get(doc, "frame", int),
                   t_capture=_get(doc, "t_capture", float), score=_get(doc, "score", float),
                   seq=_opt(doc, "seq", int), raw=doc)


@dataclass(frozen=True)
class EndOfStream:
    """A finite source ended; `error` is non-empty when it failed."""

    source: str
    frames: int
    windows: int
    dropped: int
    error: str = ""
    windows_dropped: int | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    def to_payload(self) -> dict:
        p = {"schema": SCHEMA, "event": "eos", "source": self.source, "frames": self.frames,
             "windows": self.windows, "dropped": self.dropped}
        if self.windows_dropped is not None:
            p["windows_dropped"] = self.windows_dropped
        if self.error:
            p["error"] = self.error
        return p

    @classmethod
    def from_payload(cls, doc: dict) -> "EndOfStream":
        source = _header(doc, "eos")
        error = doc.get("error", "")
        return cls(source=source, frames=_get(doc, "frames", int), windows=_get(doc, "windows", int),
                   dropped=_get(doc, "dropped", int), error=error if isinstance(error, str) else str(error),
                   windows_dropped=_opt(doc, "windows_dropped", int), raw=doc)


@dataclass(frozen=True)
class Status:
    """Periodic state of a source; `details` holds the other fields (fps, frames, dropped, windows,
    windows_dropped, reconnects, attempts, last_error, engine, url) in published order."""

    source: str
    state: str
    details: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    def to_payload(self) -> dict:
        return {"schema": SCHEMA, "event": "status", "source": self.source, "state": self.state, **self.details}

    @classmethod
    def from_payload(cls, doc: dict) -> "Status":
        source = _header(doc, "status")
        details = {k: v for k, v in doc.items() if k not in ("schema", "event", "source", "state")}
        return cls(source=source, state=_get(doc, "state", str), details=details, raw=doc)


_JPEG_MAGIC = b"\xff\xd8"


@dataclass(frozen=True)
class Preview:
    """Header of a preview message; `frame` pairs it with the prediction of the same frame."""

    source: str
    frame: int
    t_capture: float
    width: int
    height: int

    def to_payload(self) -> dict:
        return {"schema": SCHEMA, "event": "preview", "source": self.source, "frame": self.frame,
                "t_capture": self.t_capture, "width": self.width, "height": self.height}

    @classmethod
    def from_payload(cls, doc: dict) -> "Preview":
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or doc.get("event") != "preview":
            raise MessageError("not a schema-1 preview header")
        source = doc.get("source")
        if not isinstance(source, str):
            raise MessageError("preview.source must be str")
        return cls(source=source, frame=_get(doc, "frame", int, "preview"),
                   t_capture=_get(doc, "t_capture", float, "preview"), width=_get(doc, "width", int, "preview"),
                   height=_get(doc, "height", int, "preview"))


Message = Prediction | EndOfStream | Status | Change
_BY_EVENT = {"prediction": Prediction, "eos": EndOfStream, "status": Status, "change": Change}


def decode_message(topic: bytes, payload: bytes) -> Message:
    """Parse one [topic, payload] pair; raises MessageError for anything malformed."""
    doc = decode_json(payload)
    if doc.get("schema") != SCHEMA:
        raise MessageError(f"unsupported schema {doc.get('schema')!r} (expected {SCHEMA})")
    source = _get(doc, "source", str)
    if parse_topic(topic)[0] != source:
        raise MessageError(f"topic {topic!r} does not match source {source!r}")
    event = doc.get("event", "prediction")
    cls = _BY_EVENT.get(event) if isinstance(event, str) else None
    if cls is None:
        raise MessageError(f"unknown event {event!r}")
    return cls.from_payload(doc)


def decode_preview(parts: list[bytes]) -> tuple[Preview, bytes]:
    """[topic, header, JPEG] -> (header, JPEG); MessageError for anything malformed."""
    if len(parts) != 3:
        raise MessageError("preview must have 3 parts")
    header = Preview.from_payload(decode_json(parts[1]))
    if parse_topic(parts[0]) != (header.source, "preview"):
        raise MessageError("preview topic does not match its source")
    if not parts[2].startswith(_JPEG_MAGIC):
        raise MessageError("preview payload is not a JPEG")
    return header, parts[2]


def message_topic(msg: Message) -> bytes:
    """The topic a message is published on: status on .../status, everything else on .../."""
    return topic_for(msg.source, "status" if isinstance(msg, Status) else "")


def encode_message(msg: Message) -> list[bytes]:
    """[topic, payload] as published."""
    return [message_topic(msg), encode(msg.to_payload())]


# --- endpoints -------------------------------------------------------------------------------------
_ENDPOINT = re.compile(r"^(tcp://(\*|[A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\]):\d{1,5}|ipc://.+)$")


def check_endpoint(endpoint: str, flag: str = "--publish") -> str:
    """A ZeroMQ endpoint twostream can bind or connect; ConfigError naming `flag` otherwise."""
    if not _ENDPOINT.match(endpoint):
        raise ConfigError(f"{flag} {endpoint!r}: expected tcp://HOST:PORT (e.g. tcp://127.0.0.1:5555) or ipc://PATH")
    if endpoint.startswith("tcp://"):
        port = int(endpoint.rsplit(":", 1)[1])
        if not 1 <= port <= 65535:
            raise ConfigError(f"{flag} {endpoint!r}: port must be 1..65535")
    return endpoint
