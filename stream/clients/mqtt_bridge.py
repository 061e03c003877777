"""MQTT bridge: a running pipeline's ZeroMQ output, forwarded to an MQTT broker (Home Assistant, Frigate, Node-RED).

Topics (PREFIX defaults to "twostream"; <source> is the pipeline's source name):
    PREFIX/<source>/prediction   every prediction, JSON as published on ZeroMQ        QoS 0
    PREFIX/<source>/change       every change of the decided label, in order          QoS 1
    PREFIX/<source>/state        the current decided label {"label", "score", ...}    QoS 1, retained
    PREFIX/<source>/status       the latest status message                            QoS 0, retained
    PREFIX/<source>/eos          end of stream (files)                                QoS 1, retained
    PREFIX/_bridge/availability  "online" / "offline" (the broker sends "offline" as the bridge's will)
With discovery on, one Home Assistant sensor per source (DISCOVERY/sensor/twostream/<source>/config,
retained) shows the state topic's label, with its fields as attributes.

Retained topics are what a client that connects later sees at once. The bridge keeps its own copy of
everything it retained and publishes it again after every (re)connect, so a broker restart (which may
lose retained messages) costs at most the messages forwarded while it was down (paho-mqtt queues QoS 1
ones for after the reconnect). Credentials come from environment variables, never argv;
they are never logged.
"""
from __future__ import annotations

import json
import logging
import re
import ssl
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from stream.core.errors import ConfigError
from stream.core.wire import Change, EndOfStream, Prediction, Status

log = logging.getLogger("twostream")


@dataclass(frozen=True)
class MqttSettings:
    broker: str = "mqtt://127.0.0.1:1883"  # mqtt://host:port, or mqtts://host:port for TLS
    username: str = ""
    password: str = ""  # from the environment only (see stream.cli.bridge)
    ca_file: str = ""  # mqtts: PEM CA bundle ("": system roots)
    cert_file: str = ""  # mqtts: client certificate (PEM), with key_file
    key_file: str = ""
    prefix: str = "twostream"
    discovery: bool = False
    discovery_prefix: str = "homeassistant"
    client_id: str = ""
    keepalive: int = 30
    connect_timeout: float = 10.0
    reconnect_max: float = 5.0


def parse_broker(url: str) -> tuple[str, int, bool]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(f"--broker {url!r}: expected mqtt://host:port or mqtts://host:port")
    if parts.username or parts.password:
        raise ConfigError("--broker: put credentials in the environment (TWOSTREAM_MQTT_USERNAME / "
                          "TWOSTREAM_MQTT_PASSWORD), not in the URL")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise ConfigError(f"--broker {url!r}: bad port") from None
    return parts.hostname, port, parts.scheme == "mqtts"


_TOPIC_SAFE = re.compile(r"^[^#+\x00]+$")


@dataclass
class BridgeCounters:
    forwarded: dict[str, int] = field(default_factory=dict)  # by kind: prediction, change, status, eos
    connects: int = 0
    republished: int = 0


class MqttBridge:
    """Publishes decoded twostream messages to MQTT; call handle(msg) for each, close() at the end."""

    def __init__(self, settings: MqttSettings):
        import paho.mqtt.client as mqtt

        self.settings = settings
        self.host, self.port, tls = parse_broker(settings.broker)
        for name, value in (("--topic-prefix", settings.prefix), ("--discovery-prefix", settings.discovery_prefix)):
            if not value or not _TOPIC_SAFE.match(value) or value.startswith("/") or value.endswith("/"):
                raise ConfigError(f"{name} {value!r}: must be a topic level path without + # or leading/trailing /")
        self.availability = f"{settings.prefix}/_bridge/availability"
        self.counters = BridgeCounters()
        self._retained: dict[str, bytes] = {}  # topic -> payload, published again after every reconnect
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._first = threading.Event()
        self._first_error = ""
        self._sources: set[str] = set()
        self._closing = False
        client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                             client_id=settings.client_id or f"twostream-bridge-{int(time.time() * 1000) % 10**9}",
                             protocol=mqtt.MQTTv311)
        if settings.username:
            client.username_pw_set(settings.username, settings.password or None)
        if tls:
            try:
                client.tls_set(ca_certs=settings.ca_file or None, certfile=settings.cert_file or None,
                               keyfile=settings.key_file or None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"{settings.broker}: TLS files unusable ({exc})") from None
        elif settings.ca_file or settings.cert_file or settings.key_file:
            raise ConfigError(f"--broker {settings.broker!r}: TLS files are set, so use mqtts://")
        client.will_set(self.availability, b"offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(settings.reconnect_max)))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self.client = client
        self._retained[self.availability] = b"online"

    # connection ------------------------------------------------------------------------------------
    def connect(self) -> None:
        """Connect once (one-line ConfigError when the broker is unreachable or refuses), then keep reconnecting."""
        s = self.settings
        try:
            self.client.connect(self.host, self.port, keepalive=s.keepalive)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{s.broker}: cannot connect to the MQTT broker ({exc})") from None
        self.client.loop_start()
        if not self._first.wait(s.connect_timeout):
            self.client.loop_stop()
            raise ConfigError(f"{s.broker}: no answer from the MQTT broker within {s.connect_timeout:g} s")
        if self._first_error:
            self.client.loop_stop()
            self.client.disconnect()
            raise ConfigError(f"{s.broker}: the broker refused the connection: {self._first_error}"
                              + (" (check TWOSTREAM_MQTT_USERNAME / TWOSTREAM_MQTT_PASSWORD)"
                                 if "authori" in self._first_error.lower() or "password" in self._first_error.lower()
                                 else ""))

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            if not self._first.is_set():
                self._first_error = str(reason_code)
                self._first.set()
            else:
                log.warning("mqtt: %s refused the reconnection: %s", self.settings.broker, reason_code)
            return
        self.counters.connects += 1
        with self._lock:
            retained = list(self._retained.items())
        for topic, payload in retained:  # after a broker restart its retained copies may be gone
            client.publish(topic, payload, qos=1, retain=True)
        if self._first.is_set():
            self.counters.republished += len(retained)
            log.warning("mqtt: reconnected to %s; republished %d retained topics", self.settings.broker, len(retained))
        self._connected.set()
        self._first.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        self._connected.clear()
        if self._first.is_set() and not self._first_error and not self._closing:
            log.warning("mqtt: lost %s (%s); reconnecting", self.settings.broker, reason_code)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # forwarding ------------------------------------------------------------------------------------
    def _publish(self, topic: str, payload: dict | str, *, qos: int, retain: bool = False) -> None:
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload, separators=(",", ":")).encode()
        if retain:
            with self._lock:
                self._retained[topic] = data
        self.client.publish(topic, data, qos=qos, retain=retain)

    def _topic(self, source: str, kind: str) -> str:
        return f"{self.settings.prefix}/{source}/{kind}"

    def _count(self, kind: str) -> None:
        self.counters.forwarded[kind] = self.counters.forwarded.get(kind, 0) + 1

    def handle(self, msg) -> None:
        source = msg.source
        if source not in self._sources:
            self._sources.add(source)
            if self.settings.discovery:
                self._announce(source)
        if isinstance(msg, Prediction):
            self._publish(self._topic(source, "prediction"), msg.raw or msg.to_payload(), qos=0)
            self._count("prediction")
        elif isinstance(msg, Change):
            payload = msg.raw or msg.to_payload()
            self._publish(self._topic(source, "change"), payload, qos=1)
            state = {"label": msg.to_label, "score": msg.score, "since_frame": msg.frame, "seq": msg.seq,
                     "t_capture": msg.t_capture, "source": source}
            self._publish(self._topic(source, "state"), state, qos=1, retain=True)
            self._count("change")
        elif isinstance(msg, Status):
            self._publish(self._topic(source, "status"), msg.raw or msg.to_payload(), qos=0, retain=True)
            self._count("status")
        elif isinstance(msg, EndOfStream):
            self._publish(self._topic(source, "eos"), msg.raw or msg.to_payload(), qos=1, retain=True)
            self._count("eos")

    def _announce(self, source: str) -> None:
        """Home Assistant MQTT discovery: one sensor per source showing the decided label."""
        object_id = re.sub(r"[^A-Za-z0-9_-]", "_", source)
        state = self._topic(source, "state")
        config = {
            "name": f"{source} action",
            "unique_id": f"twostream_{object_id}",
            "object_id": f"twostream_{object_id}",
            "state_topic": state,
            "value_template": "{{ value_json.label }}",
            "json_attributes_topic": state,
            "availability_topic": self.availability,
            "payload_available": "online",
            "payload_not_available": "offline",
            "icon": "mdi:run",
            "device": {"identifiers": ["twostream"], "name": "twostream", "model": "two-stream action recognition"},
        }
        self._publish(f"{self.settings.discovery_prefix}/sensor/twostream/{object_id}/config", config, qos=1,
                      retain=True)

    def close(self) -> None:
        """Say "offline" (retained) and disconnect cleanly."""
        self._closing = True
        with self._lock:
            self._retained[self.availability] = b"offline"
        if self.connected:
            info = self.client.publish(self.availability, b"offline", qos=1, retain=True)
            try:
                info.wait_for_publish(2.0)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()


def run_bridge(subscriber, bridge: MqttBridge, *, stop: threading.Event | None = None,
               exit_after_eos: int = 0) -> BridgeCounters:
    """Forward every message from `subscriber` (stream.clients.client.Subscriber, status=True) until stopped.

    exit_after_eos: stop after that many end-of-stream messages (0: run until stopped).
    """
    eos = 0
    while stop is None or not stop.is_set():
        try:
            msg = subscriber.recv(0.2)
        except TimeoutError:
            continue
        bridge.handle(msg)
        if isinstance(msg, EndOfStream):
            eos += 1
            if exit_after_eos and eos >= exit_after_eos:
                break
    return bridge.counters
