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

from stream.errors import ConfigError
from stream.fusion import ScoreSmoother, top_k
from stream.messages import SCHEMA, PublishedCounts, WindowResult, encode, topic

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
                 smoothing: int, flow_length: int, ctx: zmq.Context | None = None):
        check_endpoint(endpoint)
        self.ctx = ctx or zmq.Context.instance()
        self.socket = self.ctx.socket(zmq.PUB)
        self.socket.setsockopt(zmq.SNDHWM, sndhwm)
        self.socket.setsockopt(zmq.LINGER, 1000)
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
        self.counts = [PublishedCounts() for _ in sources]
        self.smoothers = [ScoreSmoother(smoothing) for _ in sources]

    def _send(self, source: int, payload: dict, kind: str = "") -> None:
        # NOBLOCK: with HWM reached ZeroMQ drops for slow subscribers instead of blocking us.
        try:
            self.socket.send_multipart([topic(self.sources[source], kind), encode(payload)], flags=zmq.NOBLOCK)
        except zmq.Again:
            pass

    def publish_prediction(self, r: WindowResult) -> dict:
        counts = self.counts[r.source]
        if r.gap_frames or r.gap_seconds:
            self.smoothers[r.source].reset()
        fused = self.smoothers[r.source].update(np.asarray(r.fused))
        best = top_k(fused, self.labels, self.top)
        s_best = top_k(np.asarray(r.spatial), self.labels, 1)[0]
        t_best = top_k(np.asarray(r.temporal), self.labels, 1)[0]
        now = time.time()
        payload = {
            "schema": SCHEMA,
            "event": "prediction",
            "source": self.sources[r.source],
            "seq": counts.seq,
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
            "label": best[0]["label"],
            "score": best[0]["score"],
            "top": best,
            "streams": {"spatial": s_best, "temporal": t_best},
        }
        if r.gap_frames or r.gap_seconds:
            payload["gap"] = {"frames": int(r.gap_frames), "seconds": round(r.gap_seconds, 3)}
        counts.seq += 1
        counts.windows += 1
        counts.last_frame = r.frame
        self._send(r.source, payload)
        return payload

    def publish_eos(self, source: int, *, frames: int, dropped: int, windows_dropped: int, error: str) -> dict:
        payload = {
            "schema": SCHEMA,
            "event": "eos",
            "source": self.sources[source],
            "frames": int(frames),
            "windows": self.counts[source].windows,
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

    def close(self) -> None:
        self.socket.close()
