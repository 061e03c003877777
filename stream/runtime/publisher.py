"""The ZeroMQ PUB side: turns window results into schema-1 JSON messages with per-source seq numbers.

The socket never blocks the pipeline: a subscriber that falls behind loses messages
beyond SNDHWM (ZeroMQ drops them for that subscriber only) and sees the loss as a gap
in `seq`.
"""
from __future__ import annotations

import re
import time

import numpy as np
import zmq

from stream.core.errors import ConfigError
from stream.core.fusion import top_k
from stream.runtime.events import SCHEMA, WindowResult, encode, topic
from stream.core.policy import PolicySettings, make_policy
from stream.runtime.security import secure_server

_ENDPOINT = re.compile(r"^(tcp://(\*|[A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\]):\d{1,5}|ipc://.+)$")


def check_endpoint(endpoint: str, flag: str = "--publish") -> str:
    if not _ENDPOINT.match(endpoint):
        raise ConfigError(f"{flag} {endpoint!r}: expected tcp://HOST:PORT (e.g. tcp://127.0.0.1:5555) or ipc://PATH")
    if endpoint.startswith("tcp://"):
        port = int(endpoint.rsplit(":", 1)[1])
        if not 1 <= port <= 65535:
            raise ConfigError(f"{flag} {endpoint!r}: port must be 1..65535")
    return endpoint


class Publisher:
    def __init__(self, endpoint: str, *, labels: tuple[str, ...], sources: list[str], sndhwm: int, top: int,
                 policy: PolicySettings, flow_length: int, ctx: zmq.Context | None = None,
                 curve_secret_key: str = "", curve_clients: str = ""):
        check_endpoint(endpoint)
        self.ctx = ctx or zmq.Context.instance()
        self.socket = self.ctx.socket(zmq.PUB)
        self.socket.setsockopt(zmq.SNDHWM, sndhwm)
        self.socket.setsockopt(zmq.LINGER, 1000)
        self.authenticator = None
        if curve_secret_key:
            try:
                self.authenticator = secure_server(self.socket, self.ctx, secret_key_file=curve_secret_key,
                                                   clients_dir=curve_clients)
            except ConfigError:
                self.socket.close(0)
                raise
        try:
            self.socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self.socket.close(0)
            raise ConfigError(f"--publish {endpoint!r}: cannot bind ({exc})") from None
        self.endpoint = endpoint
        self.labels = labels
        self.sources = sources
        self.top = top
        self.flow_length = flow_length
        self.published = [0] * len(sources)  # predictions per source: the next seq, and the EOS window count
        self.policies = [make_policy(policy) for _ in sources]

    def _send(self, source: int, payload: dict, kind: str = "") -> None:
        # NOBLOCK: with HWM reached ZeroMQ drops for slow subscribers instead of blocking us.
        try:
            self.socket.send_multipart([topic(self.sources[source], kind), encode(payload)], flags=zmq.NOBLOCK)
        except zmq.Again:
            pass

    def publish_prediction(self, r: WindowResult) -> list[dict]:
        """Publish the window's prediction, preceded by a change event when the decided label changes."""
        seq = self.published[r.source]
        policy = self.policies[r.source]
        if r.gap_frames or r.gap_seconds:
            policy.reset()
        decision = policy.update(np.asarray(r.fused))
        scores = decision.scores
        best = top_k(scores, self.labels, self.top)
        now = time.time()
        sent = []
        if decision.changed:
            change = {
                "schema": SCHEMA, "event": "change", "source": self.sources[r.source],
                "from": None if decision.previous is None else self.labels[decision.previous],
                "to": self.labels[decision.label], "frame": r.frame, "t_capture": round(r.t_capture, 6),
                "score": round(decision.score, 6), "seq": seq,
            }
            self._send(r.source, change)
            sent.append(change)
        payload = {
            "schema": SCHEMA,
            "event": "prediction",
            "source": self.sources[r.source],
            "seq": seq,
            "frame": r.frame,
            "first_frame": r.frame - self.flow_length,
            "t_capture": round(r.t_capture, 6),
            "t_publish": round(now, 6),
            "latency_ms": round((now - r.t_capture) * 1000.0, 3),
            "stages_ms": {
                "capture_to_flow": round((r.t_flow - r.t_capture) * 1000.0, 3),
                "queue": round((r.t_infer_start - r.t_flow) * 1000.0, 3),
                "inference": round((r.t_infer_end - r.t_infer_start) * 1000.0, 3),
                "publish": round((now - r.t_infer_end) * 1000.0, 3),
            },
            "batch": r.batch,
            "label": self.labels[decision.label],
            "score": round(decision.score, 6),
            "top": best,
            "fused": top_k(np.asarray(r.fused), self.labels, 1)[0],
            "streams": {"spatial": top_k(np.asarray(r.spatial), self.labels, 1)[0],
                        "temporal": top_k(np.asarray(r.temporal), self.labels, 1)[0]},
        }
        if r.gap_frames or r.gap_seconds:
            payload["gap"] = {"frames": int(r.gap_frames), "seconds": round(r.gap_seconds, 3)}
        self.published[r.source] = seq + 1
        self._send(r.source, payload)
        sent.append(payload)
        return sent

    def publish_eos(self, source: int, *, frames: int, dropped: int, windows_dropped: int, error: str) -> dict:
        payload = {
            "schema": SCHEMA,
            "event": "eos",
            "source": self.sources[source],
            "frames": int(frames),
            "windows": self.published[source],
            "dropped": int(dropped),
            "windows_dropped": int(windows_dropped),
        }
        if error:
            payload["error"] = error
        self._send(source, payload)
        return payload

    def publish_status(self, source: int, status: dict) -> dict:
        payload = {"schema": SCHEMA, "event": "status", "source": self.sources[source], **status}
        self._send(source, payload, "status")
        return payload

    def publish_preview(self, source: int, *, frame: int, t_capture: float, width: int, height: int,
                        jpeg: bytes) -> None:
        """[topic .../preview, JSON header, JPEG]; `frame` pairs it with the prediction of the same frame."""
        header = {"schema": SCHEMA, "event": "preview", "source": self.sources[source], "frame": int(frame),
                  "t_capture": round(t_capture, 6), "width": int(width), "height": int(height)}
        try:
            self.socket.send_multipart([topic(self.sources[source], "preview"), encode(header), jpeg],
                                       flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            pass

    def close(self) -> None:
        self.socket.close()
        if self.authenticator is not None:
            self.authenticator.stop()
