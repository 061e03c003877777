"""Python client for twostream's ZeroMQ output, from one publisher or several merged.

    from stream.clients.client import Subscriber, Prediction

    with Subscriber("tcp://127.0.0.1:5555", sources=["cam1"]) as sub:
        for msg in sub:                      # Prediction, EndOfStream, Status or Change
            if isinstance(msg, Prediction):
                print(msg.source, msg.seq, msg.label, msg.score)

Several publishers (e.g. one per camera host) merge into one stream:

    Subscriber(["house=tcp://10.0.0.7:5555", "tcp://10.0.0.8:5555"])

With more than one endpoint every source name is prefixed with its endpoint's label and a
slash: `house/cam1`, `10.0.0.8:5555/cam1`. The label is the `LABEL=` given with the endpoint,
else the endpoint without its scheme (`tcp://10.0.0.8:5555` -> `10.0.0.8:5555`). Source
names never contain "/", so names from different hosts can never collide, and a name means the
same source whether or not the other hosts are up (a prefix only on collisions would rename a
source depending on which host was heard first). With one endpoint names are unchanged. The
prefix is applied to the decoded message and to its `raw` payload, so `twostream subscribe
--json` prints it too. Endpoints or labels given twice are refused (ConfigError).

`seq` gaps (lost predictions) are counted per (endpoint, source): `sub.lost` is keyed by the
(prefixed) source name.

The message types and decode_message live in stream.core.wire (re-exported here). Malformed
messages raise MessageError (a ValueError) from decode_message; the Subscriber skips them and
counts them in `malformed`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

import zmq

from stream.core.errors import ConfigError
from stream.core.wire import (  # noqa: F401  (re-exported: the client's public API)
    ROOT,
    SCHEMA,
    Change,
    EndOfStream,
    LabelScore,
    Message,
    MessageError,
    Prediction,
    Status,
    check_endpoint,
    decode_message,
    topic_for,
)

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")  # as source names (stream.runtime.sources)


@dataclass(frozen=True)
class Endpoint:
    """One publisher to connect to; `label` prefixes its source names when several are merged."""

    endpoint: str
    label: str


def parse_endpoints(values: str | Endpoint | list[str | Endpoint] | tuple[str | Endpoint, ...],
                    flag: str = "--connect") -> list[Endpoint]:
    """`ENDPOINT` or `LABEL=ENDPOINT` each; ConfigError (one line naming `flag`) for bad or repeated ones."""
    if isinstance(values, (str, Endpoint)):
        values = [values]
    if not values:
        raise ConfigError(f"{flag}: give at least one endpoint")
    out: list[Endpoint] = []
    for value in values:
        if isinstance(value, Endpoint):
            out.append(Endpoint(check_endpoint(value.endpoint, flag), value.label))
            continue
        label, sep, endpoint = value.partition("=")
        if not sep or "://" in label:  # no label (an ipc:// path may contain '=')
            label, endpoint = "", value
        elif not _LABEL.match(label):
            raise ConfigError(f"{flag} {value!r}: label {label!r} must be 1-64 letters, digits, '_', '.', '-' "
                              f"(starting with a letter or digit)")
        check_endpoint(endpoint, flag)
        out.append(Endpoint(endpoint, label or endpoint.split("://", 1)[1]))
    for key, what, hint in ((lambda e: e.endpoint, "endpoint", "give each publisher once"),
                            (lambda e: e.label, "label", "source names would collide; give another LABEL=")):
        seen: set[str] = set()
        for e in out:
            if key(e) in seen:
                raise ConfigError(f"{flag}: {what} {key(e)!r} is given twice ({hint})")
            seen.add(key(e))
    return out


def qualify(msg: Message, label: str) -> Message:
    """The message with its source renamed `label/source` (payload included)."""
    name = f"{label}/{msg.source}"
    return replace(msg, source=name, raw=dict(msg.raw, source=name))


def _prefixes(sources: list[str] | None, label: str, merged: bool) -> list[bytes]:
    """Topic prefixes to subscribe to on one endpoint: `name` means that source on every endpoint,
    `label/name` only on the endpoint with that label."""
    if not sources:
        return [ROOT.encode()]
    out = []
    for s in sources:
        head, sep, name = s.rpartition("/")
        if merged and sep:
            if head == label:
                out.append(topic_for(name))
        else:
            out.append(topic_for(s))
    return out


class Subscriber:
    """SUB socket(s) on twostream topics; iterate to receive decoded messages.

    endpoint: one endpoint, or a list of them (`LABEL=ENDPOINT` allowed) to merge several publishers.
    sources: names to subscribe to (None: all). status: also receive status messages.
    timeout: seconds to wait for a message before iteration raises TimeoutError (None: forever).
    """

    def __init__(self, endpoint: str | list[str | Endpoint] = "tcp://127.0.0.1:5555", *,
                 sources: list[str] | None = None,
                 status: bool = False, timeout: float | None = None, ctx: zmq.Context | None = None,
                 curve: dict | None = None):
        self.endpoints = parse_endpoints(endpoint, "endpoint") if not isinstance(endpoint, str) else \
            [Endpoint(endpoint, endpoint.split("://", 1)[-1])]
        self.merged = len(self.endpoints) > 1
        self.ctx = ctx or zmq.Context.instance()
        self.sockets: list[zmq.Socket] = []
        self.poller = zmq.Poller()
        try:
            for ep in self.endpoints:
                sock = self.ctx.socket(zmq.SUB)
                self.sockets.append(sock)
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.RECONNECT_IVL, 20)  # join a publisher that starts later quickly
                if curve:  # {"public": ..., "secret": ..., "server": ...} z85 keys
                    sock.curve_publickey = curve["public"]
                    sock.curve_secretkey = curve["secret"]
                    sock.curve_serverkey = curve["server"]
                for p in _prefixes(sources, ep.label, self.merged):
                    sock.setsockopt(zmq.SUBSCRIBE, p)
                sock.connect(ep.endpoint)
                self.poller.register(sock, zmq.POLLIN)
        except BaseException:
            self.close()
            raise
        self._next = 0  # round robin over the endpoints, so a busy one cannot starve the others
        self.status = status
        self.timeout = timeout
        self.malformed = 0
        self.last_seq: dict[str, int] = {}
        self.lost: dict[str, int] = {}  # predictions missed per (endpoint, source), from seq gaps

    @property
    def socket(self) -> zmq.Socket:
        """The SUB socket of the first endpoint (the only one unless several are merged)."""
        return self.sockets[0]

    def _recv_parts(self, timeout: float | None) -> tuple[int, list[bytes]]:
        while True:
            n = len(self.sockets)
            for k in range(n):
                i = (self._next + k) % n
                try:
                    parts = self.sockets[i].recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    continue
                self._next = (i + 1) % n
                return i, parts
            if not self.poller.poll(None if timeout is None else int(timeout * 1000)) and timeout is not None:
                raise TimeoutError(f"no message within {timeout:g} s")

    def recv(self, timeout: float | None = None) -> Message:
        timeout = self.timeout if timeout is None else timeout
        while True:
            i, parts = self._recv_parts(timeout)
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
            if self.merged:
                msg = qualify(msg, self.endpoints[i].label)
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
        for sock in self.sockets:
            sock.close(0)

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
