"""Run `twostream run` as a real subprocess and collect everything it publishes, as a subscriber would.

The one "run the pipeline and collect its output" harness: eval-stream scores videos with it and
the end-to-end tests assert on it. The subscriber connects before the pipeline binds (ZeroMQ
reconnects), so no early message is lost; collection ends at the expected end-of-stream messages,
when the pipeline has exited and nothing more arrives, or at the deadline.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from stream.core.ports import free_port

ROOT = Path(__file__).resolve().parents[2]  # the directory holding the stream package
DRAIN_S = 0.5  # after the pipeline exits, stop once no message came for this long (loopback delivers in ms)


@dataclass
class CollectedRun:
    """What one pipeline run printed and published."""

    proc: subprocess.CompletedProcess  # args, returncode, stdout, stderr (text)
    messages: list = field(default_factory=list)  # decoded messages (stream.core.wire types), arrival order
    lost: dict = field(default_factory=dict)  # source -> predictions missed (seq gaps seen by the subscriber)
    seconds: float = 0.0  # from process start to the end of collection
    timed_out: bool = False  # the deadline came before the end condition


def run_and_collect(run_args: list[str], *, timeout: float = 120.0, endpoint: str | None = None,
                    sources: list[str] | None = None, status: bool = True, expect_eos: int | None = None,
                    extra_env: dict | None = None, cwd: str | Path | None = None,
                    python: str = sys.executable) -> CollectedRun:
    """Run `python -m stream.cli run RUN_ARGS --publish ENDPOINT` (a free loopback port unless given).

    `cwd`: where it runs (default: here; relative paths in RUN_ARGS are taken from there). Ends at
    `expect_eos` end-of-stream messages, or when the process has exited and no message came
    for DRAIN_S, or after `timeout` s (the process is then killed if it does not exit on its own).
    """
    from stream.clients.client import EndOfStream, Subscriber

    endpoint = endpoint or f"tcp://127.0.0.1:{free_port()}"
    env = dict(os.environ, **(extra_env or {}))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [python, "-m", "stream.cli", "run", *run_args, "--publish", endpoint]
    result = CollectedRun(proc=subprocess.CompletedProcess(cmd, -1))
    # Output goes to files, not pipes: a chatty run (--print) cannot block on a full pipe while we collect.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
            Subscriber(endpoint, sources=sources, status=status, timeout=0.2) as sub:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, text=True, env=env)
        deadline = t0 + timeout
        eos = 0
        last_message = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if now > deadline:
                    result.timed_out = True
                    break
                try:
                    msg = sub.recv()
                except TimeoutError:
                    if proc.poll() is not None and time.monotonic() - last_message > DRAIN_S:
                        break
                    continue
                last_message = time.monotonic()
                result.messages.append(msg)
                if isinstance(msg, EndOfStream):
                    eos += 1
                    if expect_eos is not None and eos >= expect_eos:
                        break
            result.lost = dict(sub.lost)
            try:
                proc.wait(timeout=max(5.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        finally:
            if proc.poll() is None:  # an exception while collecting: never leave the pipeline behind
                proc.kill()
                proc.wait()
        result.seconds = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        result.proc = subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())
    return result
