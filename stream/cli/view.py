"""Serve a live web page of a running pipeline: one tile per source with its preview frame, the fused
top-3 with score bars, each stream's top-1, latency and fps, the source state
(live / reconnecting / ended / failed / silent) and a timeline of the last labels.

The view is a ZeroMQ subscriber of `twostream run`, so it works on a server without a
display: open the printed URL in a browser (through an SSH tunnel for a remote box).
Frames appear when the pipeline runs with --preview; without it the tiles show labels only.
Binds to 127.0.0.1 unless --host says otherwise. Ctrl-C stops it.

examples:
  twostream run --preview assets/demo.mp4 &
  twostream view                       # then open http://127.0.0.1:8080/
  twostream view --connect tcp://10.0.0.7:5555 --port 8090
  twostream view --connect house=tcp://10.0.0.7:5555 --connect shed=tcp://10.0.0.8:5555

Several --connect merge several publishers on one page; source names then become LABEL/NAME
(LABEL as given in LABEL=ENDPOINT, else the endpoint's host:port), so equal names on two hosts
stay apart. A repeated endpoint or label is refused.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--connect", action="append", metavar="[LABEL=]ENDPOINT",
                   help="publisher endpoint of `twostream run` (default tcp://127.0.0.1:5555); repeat to merge "
                        "several publishers: sources are then named LABEL/NAME (LABEL default: the endpoint's "
                        "host:port)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1; 0.0.0.0 exposes the cameras to the network)")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080; 0 picks a free one)")


def main(args: argparse.Namespace) -> int:
    from stream.clients.client import parse_endpoints
    from stream.clients.view_server import ViewServer
    from stream.core.errors import ConfigError

    logging.basicConfig(level=logging.INFO, format="twostream view: %(message)s", stream=sys.stderr)
    endpoints = parse_endpoints(args.connect or ["tcp://127.0.0.1:5555"], "--connect")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: must be 0..65535")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        logging.warning("serving on %s: anyone who can reach this address sees the camera previews", args.host)
    server = ViewServer(endpoints, host=args.host, port=args.port)
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        stop.set()

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        logging.info("serving %s (subscribed to %s); Ctrl-C stops", server.url, server.endpoint)
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        server.close()
    logging.info("stopped")
    return 0
