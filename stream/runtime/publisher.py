"""Publish: the ZeroMQ PUB socket that sends wire messages (stream.core.wire) made by stream.runtime.decider.

It owns the socket, its CURVE security (stream.runtime.security), SNDHWM and the sending;
what to send is decided before it. The socket never blocks the pipeline: a subscriber that
falls behind loses messages beyond SNDHWM (ZeroMQ drops them for that subscriber only) and
sees the loss as a gap in `seq`.
"""
from __future__ import annotations

import zmq

from stream.core.config import PublishSettings
from stream.core.errors import ConfigError
from stream.core.wire import Message, Preview, check_endpoint, encode, message_topic, topic_for
from stream.runtime.security import secure_server


class Publisher:
    """Binds `publish.endpoint` at construction (problems are one-line ConfigErrors naming --publish)."""

    def __init__(self, publish: PublishSettings, *, ctx: zmq.Context | None = None):
        endpoint = check_endpoint(publish.endpoint)
        self.ctx = ctx or zmq.Context.instance()
        self.socket = self.ctx.socket(zmq.PUB)
        self.socket.setsockopt(zmq.SNDHWM, publish.sndhwm)
        self.socket.setsockopt(zmq.LINGER, 1000)
        self.authenticator = None
        if publish.curve_secret_key:
            try:
                self.authenticator = secure_server(self.socket, self.ctx, secret_key_file=publish.curve_secret_key,
                                                   clients_dir=publish.curve_clients)
            except ConfigError:
                self.socket.close(0)
                raise
        try:
            self.socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self.socket.close(0)
            raise ConfigError(f"--publish {endpoint!r}: cannot bind ({exc})") from None
        self.endpoint = endpoint

    def send(self, msg: Message) -> dict:
        """Send one message; returns its payload as published (for --print and the run summary)."""
        payload = msg.to_payload()
        self._send([message_topic(msg), encode(payload)])
        return payload

    def send_preview(self, header: Preview, jpeg: bytes) -> None:
        """[topic .../preview, JSON header, JPEG]."""
        self._send([topic_for(header.source, "preview"), encode(header.to_payload()), jpeg], copy=False)

    def _send(self, parts: list[bytes], copy: bool = True) -> None:
        # NOBLOCK: with HWM reached ZeroMQ drops for slow subscribers instead of blocking us.
        try:
            self.socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=copy)
        except zmq.Again:
            pass

    def close(self) -> None:
        self.socket.close()
        if self.authenticator is not None:
            self.authenticator.stop()
