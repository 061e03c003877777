"""Forward a running pipeline's predictions, change events, status and end of stream to another system.

`twostream bridge mqtt` subscribes to one or more publishers (ZeroMQ) and republishes on an MQTT
broker under PREFIX/<source>/{prediction,change,state,status,eos} (see stream.clients.mqtt_bridge):
changes with QoS 1, the current decided label retained on .../state so a client that connects later
sees it at once, and with --discovery one Home Assistant sensor per source. The bridge survives a
broker restart: it reconnects and publishes its retained topics again.

The broker login comes from the environment (never the command line, never logged):
TWOSTREAM_MQTT_USERNAME and TWOSTREAM_MQTT_PASSWORD (other names with --username-env / --password-env).

examples:
  twostream bridge mqtt --broker mqtt://127.0.0.1:1883
  TWOSTREAM_MQTT_USERNAME=ha TWOSTREAM_MQTT_PASSWORD=... twostream bridge mqtt --broker mqtts://broker.lan:8883 \\
      --ca-file ca.pem --discovery --connect house=tcp://10.0.0.7:5555 --connect shed=tcp://10.0.0.8:5555
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", choices=("mqtt",), help="where to forward to (mqtt)")
    p.add_argument("--connect", action="append", metavar="[LABEL=]ENDPOINT",
                   help="publisher endpoint (default tcp://127.0.0.1:5555); repeat to merge several publishers "
                        "(sources are then LABEL/NAME, as in `twostream subscribe`)")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", metavar="URL",
                   help="mqtt://host:port, or mqtts://host:port for TLS (default mqtt://127.0.0.1:1883)")
    p.add_argument("--username-env", default="TWOSTREAM_MQTT_USERNAME", metavar="VAR",
                   help="environment variable holding the broker user name (default TWOSTREAM_MQTT_USERNAME)")
    p.add_argument("--password-env", default="TWOSTREAM_MQTT_PASSWORD", metavar="VAR",
                   help="environment variable holding the broker password (default TWOSTREAM_MQTT_PASSWORD)")
    p.add_argument("--ca-file", default="", metavar="PEM", help="mqtts: CA certificates (default: system roots)")
    p.add_argument("--cert-file", default="", metavar="PEM", help="mqtts: client certificate (with --key-file)")
    p.add_argument("--key-file", default="", metavar="PEM", help="mqtts: client private key")
    p.add_argument("--topic-prefix", default="twostream", metavar="P", help="topic root (default twostream)")
    p.add_argument("--discovery", action="store_true", help="announce one Home Assistant sensor per source")
    p.add_argument("--discovery-prefix", default="homeassistant", metavar="P",
                   help="Home Assistant's discovery prefix (default homeassistant)")
    p.add_argument("--client-id", default="", help="MQTT client id (default: twostream-bridge-<n>)")
    p.add_argument("--exit-after-eos", type=int, default=0, metavar="N",
                   help="exit after N end-of-stream messages (default 0: run until interrupted)")
    p.add_argument("--curve-server-key", metavar="FILE", help="CURVE: the publisher's public certificate")
    p.add_argument("--curve-client-key", metavar="FILE", help="CURVE: this subscriber's certificate with secret key")
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")


def main(args: argparse.Namespace) -> int:
    from stream.clients.client import Subscriber, parse_endpoints
    from stream.clients.mqtt_bridge import MqttBridge, MqttSettings, run_bridge
    from stream.core.errors import ConfigError
    from stream.runtime.security import client_curve

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="twostream: %(message)s",
                        stream=sys.stderr)
    username = os.environ.get(args.username_env, "")
    password = os.environ.get(args.password_env, "")
    if password and not username:
        raise ConfigError(f"${args.password_env} is set but ${args.username_env} is not")
    endpoints = parse_endpoints(args.connect or ["tcp://127.0.0.1:5555"], "--connect")
    if args.curve_client_key and not args.curve_server_key:
        raise ConfigError("--curve-client-key needs --curve-server-key (the publisher's public certificate)")
    curve = client_curve(args.curve_server_key, args.curve_client_key) if args.curve_server_key else None
    settings = MqttSettings(broker=args.broker, username=username, password=password, ca_file=args.ca_file,
                            cert_file=args.cert_file, key_file=args.key_file, prefix=args.topic_prefix,
                            discovery=args.discovery, discovery_prefix=args.discovery_prefix,
                            client_id=args.client_id)
    bridge = MqttBridge(settings)
    bridge.connect()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sub = Subscriber(endpoints if len(endpoints) > 1 else endpoints[0].endpoint, status=True, curve=curve)
    logging.getLogger("twostream").info("bridging %s -> %s (topics %s/<source>/...)",
                                        ", ".join(e.endpoint for e in endpoints), args.broker, args.topic_prefix)
    try:
        counters = run_bridge(sub, bridge, stop=stop, exit_after_eos=args.exit_after_eos)
    finally:
        sub.close()
        bridge.close()
    logging.getLogger("twostream").info("forwarded %s; %d connection(s)", counters.forwarded, counters.connects)
    return 0
