"""The live view behind `twostream view`: a ZeroMQ SUB thread keeps the latest state of every source,
a standard-library HTTP server shows it.

    GET /                  the page (stream.clients.view_page)
    GET /events            Server-Sent Events: a JSON snapshot of all sources on every change (<= 10/s,
                           and at least once a second so time-based states such as "silent" update)
    GET /state             the same snapshot once
    GET /frame/<src>.jpg   the newest preview JPEG of a source (404 until one arrived)
    GET /mjpeg/<src>       the previews as an MJPEG stream (multipart/x-mixed-replace), for other players

The view is just another subscriber: it never slows the pipeline (ZeroMQ drops for a
slow subscriber), and it can start before or after the pipeline. Given several endpoints it
merges their streams, naming sources `LABEL/NAME` as stream.clients.client.Subscriber does.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import zmq

from stream.clients.client import Endpoint, parse_endpoints, qualify
from stream.clients.view_page import PAGE
from stream.core.errors import ConfigError
from stream.core.wire import ROOT, Change, EndOfStream, MessageError, Prediction, Status, decode_message, decode_preview

log = logging.getLogger("twostream.view")

TIMELINE = 8  # label segments kept per source
SILENT_AFTER = 5.0  # seconds without any message before a source that has not ended shows as "silent"


class SourceView:
    """What the page shows for one source; mutated only under ViewState's lock."""

    def __init__(self, name: str):
        self.name = name
        self.prediction: dict | None = None
        self.status: dict | None = None
        self.eos: dict | None = None
        self.timeline: deque[dict] = deque(maxlen=TIMELINE)  # merged runs of one label
        self.pred_times: deque[float] = deque(maxlen=20)
        self.preview: bytes | None = None
        self.preview_header: dict | None = None
        self.preview_version = 0
        self.last_seen = time.monotonic()

    def state(self, now: float) -> str:
        if self.eos is not None:
            return "failed" if self.eos.get("error") else "ended"
        if now - self.last_seen > SILENT_AFTER:
            return "silent"
        if self.status is not None:
            return str(self.status.get("state", "live"))
        return "live"

    def add_prediction(self, p: dict) -> None:
        self.prediction = p
        self.pred_times.append(p["t_publish"])
        last = self.timeline[-1] if self.timeline else None
        if last is not None and last["label"] == p["label"] and self.eos is None:
            last["to_frame"] = p["frame"]
            last["count"] += 1
        else:
            self.timeline.append({"label": p["label"], "from_frame": p["frame"], "to_frame": p["frame"], "count": 1})

    def snapshot(self, now: float) -> dict:
        p, st = self.prediction, self.status or {}
        rate = 0.0
        if len(self.pred_times) >= 2 and self.pred_times[-1] > self.pred_times[0]:
            rate = (len(self.pred_times) - 1) / (self.pred_times[-1] - self.pred_times[0])
        doc = {
            "source": self.name,
            "state": self.state(now),
            "seq": p["seq"] if p else None,
            "frame": p["frame"] if p else None,
            "label": p["label"] if p else None,
            "score": p["score"] if p else None,
            "top": p["top"] if p else [],
            "streams": p["streams"] if p else None,
            "latency_ms": p["latency_ms"] if p else None,
            "capture_fps": st.get("fps"),
            "predictions_per_s": round(rate, 2),
            "dropped": st.get("dropped", 0),
            "reconnects": st.get("reconnects", 0),
            "timeline": list(self.timeline),
            "preview": dict(self.preview_header, version=self.preview_version) if self.preview_header else None,
            "error": (self.eos or {}).get("error", ""),
            "seconds_since_message": round(now - self.last_seen, 1),
        }
        return doc


class ViewState:
    """All sources, a version counter, and a condition that wakes the SSE/MJPEG handlers on changes."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.sources: dict[str, SourceView] = {}
        self.malformed = 0
        self.version = 0
        self.closing = False
        self.cond = threading.Condition()

    def _source(self, name: str) -> SourceView:
        view = self.sources.get(name)
        if view is None:
            view = self.sources[name] = SourceView(name)
        return view

    def handle(self, parts: list[bytes], label: str = "") -> None:
        """One multipart message from a publisher; anything malformed is counted and dropped.
        `label`: the publisher's label when several are merged (source names become `label/name`)."""
        try:
            if parts and parts[0].endswith(b"/preview"):
                self._handle_preview(parts, label)
                return
            if len(parts) != 2:
                raise MessageError(f"{len(parts)}-part message")
            msg = decode_message(parts[0], parts[1])
        except MessageError:
            with self.cond:
                self.malformed += 1
            return
        if label:
            msg = qualify(msg, label)
        with self.cond:
            view = self._source(msg.source)
            view.last_seen = time.monotonic()
            if isinstance(msg, Prediction):
                if view.eos is not None and msg.seq == 0:  # the source started again (a new run)
                    view.eos = None
                    view.timeline.clear()
                view.add_prediction(msg.raw)
            elif isinstance(msg, Status):
                view.status = msg.raw
            elif isinstance(msg, EndOfStream):
                view.eos = msg.raw
            elif isinstance(msg, Change):
                return  # the timeline is built from the predictions themselves
            self._changed()

    def _handle_preview(self, parts: list[bytes], label: str) -> None:
        header, jpeg = decode_preview(parts)
        with self.cond:
            view = self._source(f"{label}/{header.source}" if label else header.source)
            view.last_seen = time.monotonic()
            view.preview = jpeg
            view.preview_header = {"frame": header.frame, "t_capture": header.t_capture, "width": header.width,
                                   "height": header.height}
            view.preview_version += 1
            self._changed()

    def _changed(self) -> None:
        self.version += 1
        self.cond.notify_all()

    def snapshot(self) -> dict:
        now = time.monotonic()
        with self.cond:
            return {
                "endpoint": self.endpoint,
                "version": self.version,
                "malformed": self.malformed,
                "sources": [self.sources[k].snapshot(now) for k in sorted(self.sources)],
            }

    def wait_change(self, version: int, timeout: float) -> int:
        """Block until the version moves past `version`, closing starts, or `timeout` passes."""
        with self.cond:
            self.cond.wait_for(lambda: self.version != version or self.closing, timeout=timeout)
            return self.version

    def preview(self, name: str) -> tuple[bytes | None, int]:
        with self.cond:
            view = self.sources.get(name)
            if view is None or view.preview is None:
                return None, 0
            return view.preview, view.preview_version

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()


def subscribe_loop(state: ViewState, endpoints: list[Endpoint], stop: threading.Event, ctx: zmq.Context) -> None:
    """SUB thread: every twostream topic of every endpoint, latest-wins; a small RCVHWM per endpoint so a
    stalled view never hoards memory. With several endpoints, source names get their endpoint's label."""
    merged = len(endpoints) > 1
    poller = zmq.Poller()
    socks: dict[zmq.Socket, str] = {}
    try:
        for ep in endpoints:
            sub = ctx.socket(zmq.SUB)
            socks[sub] = ep.label if merged else ""
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.RCVHWM, 1000)
            sub.setsockopt(zmq.RECONNECT_IVL, 100)
            sub.setsockopt(zmq.SUBSCRIBE, ROOT.encode())
            sub.connect(ep.endpoint)
            poller.register(sub, zmq.POLLIN)
        while not stop.is_set():
            for sub, _ in poller.poll(200):  # one message per ready endpoint per turn: none starves the others
                state.handle(sub.recv_multipart(), socks[sub])
    finally:
        for sub in socks:
            sub.close(0)


class _Handler(BaseHTTPRequestHandler):
    server_version = "twostream-view"
    state: ViewState  # set on the subclass made per server

    def log_message(self, fmt, *args) -> None:  # requests go to the debug log, not stderr
        log.debug("%s %s", self.address_string(), fmt % args)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        try:
            if path in ("/", "/index.html"):
                self._send(200, PAGE.encode("utf-8"), "text/html; charset=utf-8")
            elif path == "/state":
                self._send(200, json.dumps(self.state.snapshot()).encode(), "application/json")
            elif path == "/events":
                self._events()
            elif path.startswith("/frame/") and path.endswith(".jpg"):
                jpeg, _ = self.state.preview(unquote(path[len("/frame/"):-len(".jpg")]))
                if jpeg is None:
                    self._send(404, b"no preview for this source (is the pipeline run with --preview?)\n",
                               "text/plain; charset=utf-8")
                else:
                    self._send(200, jpeg, "image/jpeg")
            elif path.startswith("/mjpeg/"):
                self._mjpeg(unquote(path[len("/mjpeg/"):]))
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away

    def _stream_headers(self, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()

    def _events(self) -> None:
        self._stream_headers("text/event-stream")
        self.wfile.write(b"retry: 1000\n\n")
        version = self.state.version
        while not self.state.closing:
            data = json.dumps(self.state.snapshot(), separators=(",", ":"))
            self.wfile.write(f"data: {data}\n\n".encode())
            self.wfile.flush()
            time.sleep(0.1)  # coalesce bursts: at most 10 snapshots a second
            version = self.state.wait_change(version, timeout=1.0)

    def _mjpeg(self, name: str) -> None:
        self._stream_headers("multipart/x-mixed-replace; boundary=twostreamframe")
        shown = -1
        while not self.state.closing:
            jpeg, version = self.state.preview(name)
            if jpeg is not None and version != shown:
                shown = version
                self.wfile.write(b"--twostreamframe\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                self.wfile.flush()
            self.state.wait_change(self.state.version, timeout=1.0)


class ViewServer:
    """Binds the HTTP port at construction (errors are ConfigErrors); start() runs both threads."""

    def __init__(self, endpoint: str | list[str], *, host: str = "127.0.0.1", port: int = 8080):
        self.endpoints = parse_endpoints(endpoint)
        self.endpoint = ", ".join(e.endpoint for e in self.endpoints)  # what the page shows
        self.state = ViewState(self.endpoint)
        handler = type("Handler", (_Handler,), {"state": self.state})
        server_cls = ThreadingHTTPServer
        if ":" in host:  # IPv6 literal
            server_cls = type("ThreadingHTTPServer6", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
        # ThreadingHTTPServer has daemon_threads = True: open SSE/MJPEG handlers never hold up exit.
        try:
            self.httpd = server_cls((host, port), handler)
        except OSError as exc:
            raise ConfigError(f"--host {host} --port {port}: cannot listen ({exc.strerror or exc})") from None
        self.host = host
        self.port = self.httpd.server_address[1]
        self.ctx = zmq.Context()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=subscribe_loop, args=(self.state, self.endpoints, self._stop, self.ctx),
                             name="view-sub", daemon=True),
            threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="view-http",
                             daemon=True),
        ]
        for t in self._threads:
            t.start()

    def close(self) -> None:
        """Stop streaming handlers, the HTTP loop and the SUB thread; release the port and the socket."""
        self.state.close()
        self._stop.set()
        if self._threads:
            self.httpd.shutdown()
        self.httpd.server_close()
        for t in self._threads:
            t.join(2.0)
        self.ctx.term()
