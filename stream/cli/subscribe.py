"""Print predictions published by a running `twostream run`.

Human-readable lines by default, one JSON message per line with --json. Exits after
--count messages, or with --until-eos after the end of stream of every subscribed
source (all sources seen when no --source is given; with several --connect, only once every
publisher has been heard from). Lost predictions (gaps in seq, e.g. because this subscriber
fell behind) are reported on stderr, per publisher and source.

Several --connect merge several publishers (e.g. one per camera host). Source names then
become LABEL/NAME, LABEL being the one given as --connect LABEL=ENDPOINT or else the endpoint
without tcp:// (10.0.0.8:5555/cam1), so equal names on two hosts stay apart; this applies to
printed lines, --json payloads and --source (NAME: that source on every publisher,
LABEL/NAME: on one). A repeated endpoint or label is refused.

examples:
  twostream subscribe
  twostream subscribe --source cam1 --json --until-eos
  twostream subscribe --connect house=tcp://10.0.0.7:5555 --connect shed=tcp://10.0.0.8:5555
"""
from __future__ import annotations

import argparse
import json
import sys


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--connect", action="append", metavar="[LABEL=]ENDPOINT",
                   help="publisher endpoint (default tcp://127.0.0.1:5555); repeat to merge several "
                        "publishers: sources are then named LABEL/NAME (LABEL default: the endpoint's host:port)")
    p.add_argument("--source", action="append", metavar="NAME",
                   help="only this source (repeatable; with several --connect, NAME or LABEL/NAME)")
    p.add_argument("--count", type=int, metavar="N", help="exit after N messages")
    p.add_argument("--until-eos", action="store_true",
                   help="exit after the end of stream of every source (with several --connect: of every "
                        "publisher's sources, once each publisher has been heard from)")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    p.add_argument("--status", action="store_true", help="also print status messages")
    p.add_argument("--changes", action="store_true", help="print only label-change events")
    p.add_argument("--timeout", type=float, metavar="S", help="exit with status 1 if no message arrives for S seconds")
    p.add_argument("--curve-server-key", metavar="FILE",
                   help="CURVE: the publisher's public certificate (server.key); needed when it encrypts")
    p.add_argument("--curve-client-key", metavar="FILE",
                   help="CURVE: this subscriber's certificate with secret key (client.key_secret), when the "
                        "publisher only lets listed clients in (default: a throwaway key pair)")


def main(args: argparse.Namespace) -> int:
    from stream.cli.run import format_prediction
    from stream.clients.client import Change, EndOfStream, Prediction, Status, Subscriber, parse_endpoints
    from stream.core.errors import ConfigError
    from stream.runtime.security import client_curve

    endpoints = parse_endpoints(args.connect or ["tcp://127.0.0.1:5555"], "--connect")
    merged = len(endpoints) > 1
    connect = ", ".join(e.endpoint for e in endpoints)
    if args.count is not None and args.count < 1:
        raise ConfigError(f"--count {args.count}: must be >= 1")
    labels = {e.label for e in endpoints}
    for name in args.source or []:
        head, sep, _ = name.rpartition("/")
        if merged and sep and head not in labels:
            raise ConfigError(f"--source {name!r}: no --connect is labelled {head!r} "
                              f"(labels: {', '.join(sorted(labels))})")
    # --until-eos waits for the sources named in full; a NAME that several publishers may have counts as
    # every one of them that was seen
    wanted = {s for s in args.source or [] if not merged or "/" in s}
    plain = merged and any("/" not in s for s in args.source or [])
    # ... and, merged, for every publisher subscribed to to have been heard from (one may start later)
    need = {s.rpartition("/")[0] for s in wanted} if merged and args.source and not plain else \
        labels if merged else set()
    seen: set[str] = set()
    ended: set[str] = set()
    n = 0
    if args.curve_client_key and not args.curve_server_key:
        raise ConfigError("--curve-client-key needs --curve-server-key (the publisher's public certificate)")
    curve = client_curve(args.curve_server_key, args.curve_client_key) if args.curve_server_key else None
    sub = Subscriber(endpoints if merged else endpoints[0].endpoint,
                     sources=args.source, status=args.status, timeout=args.timeout, curve=curve)
    try:
        while True:
            try:
                msg = sub.recv()
            except TimeoutError:
                print(f"twostream subscribe: no message from {connect} for {args.timeout:g} s", file=sys.stderr)
                return 1
            seen.add(msg.source)
            if isinstance(msg, EndOfStream):
                ended.add(msg.source)
            show = not args.changes or isinstance(msg, (Change, EndOfStream))
            if show:
                if args.json:
                    print(json.dumps(msg.raw), flush=True)
                elif isinstance(msg, (Prediction, EndOfStream)):
                    print(format_prediction(msg.raw), flush=True)
                elif isinstance(msg, Change):
                    print(f"[{msg.source}] change at frame {msg.frame}: {msg.from_label} -> {msg.to_label} "
                          f"({msg.score:.2f})", flush=True)
                elif isinstance(msg, Status):
                    r = msg.raw
                    print(f"[{msg.source}] status {msg.state}: {r.get('fps', 0)} fps, {r.get('dropped', 0)} dropped",
                          flush=True)
                n += 1
            if args.count and n >= args.count:
                break
            heard = {s.rpartition("/")[0] for s in seen} >= need
            if args.until_eos and ended and heard and ended >= (seen if plain else wanted or seen) \
                    and ended >= wanted:
                break
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()
        for source, lost in sorted(sub.lost.items()):
            print(f"twostream subscribe: {source}: {lost} prediction(s) lost (seq gaps)", file=sys.stderr)
    return 0
