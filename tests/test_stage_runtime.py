"""The stage runtime (stream.runtime.stage): FFmpeg/OpenCV chatter written to fd 2 from C goes through
logging (debug level) instead of onto the terminal, stage log records reach the supervisor, and Python's
own stderr still reaches the terminal. Checked on a real spawned process and on the real CLI against an
unreachable RTSP URL.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import re
import subprocess
import sys

import zmq
from conftest import ROOT, free_port


def _chatty_stage(endpoint: str, stop) -> None:
    """A stage main: writes like FFmpeg does (straight to fd 2), logs, and prints a Python warning line."""
    from stream.runtime.stage import StageLink, stage_runtime

    with stage_runtime(StageLink(log_endpoint=endpoint, log_level=logging.DEBUG)) as stage:
        os.write(2, b"[tcp @ 0x55] Connection to tcp://user:hunter2@127.0.0.1:1 failed: Connection refused\n")
        os.write(2, b"[ WARN:0@0.1] global cap.cpp:212 open VIDEOIO(FFMPEG)")  # no newline: flushed at exit
        logging.getLogger("twostream").warning("cam: cannot open")
        print("python-level stderr line", file=sys.stderr)
        assert stage.alive() and stage.running(stop)
    os.write(2, b"after the stage: fd 2 is the terminal again\n")


def test_chatter_on_fd2_becomes_debug_records_for_the_supervisor(tmp_path, capfd):
    from stream.runtime.stage import SharedFlag, StageLog

    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    endpoint = f"ipc://{tmp_path}/results"
    pull.bind(endpoint)
    spawn = mp.get_context("spawn")
    stop = SharedFlag(spawn)  # what the supervisor gives its stages
    proc = spawn.Process(target=_chatty_stage, args=(endpoint, stop), name="twostream-chatty")
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    records = []
    while pull.poll(2000):
        msg = pull.recv_pyobj()
        assert isinstance(msg, StageLog)
        records.append((msg.level, msg.message))
    pull.close(0)
    ctx.term()
    assert (logging.WARNING, "cam: cannot open") in records
    debug = [m for level, m in records if level == logging.DEBUG]
    assert debug == ["ts-chatty: [tcp @ 0x55] Connection to tcp://user:***@127.0.0.1:1 failed: Connection refused",
                     "ts-chatty: [ WARN:0@0.1] global cap.cpp:212 open VIDEOIO(FFMPEG)"]
    err = capfd.readouterr().err
    assert "python-level stderr line" in err and "after the stage: fd 2 is the terminal again" in err
    assert "[tcp @" not in err and "[ WARN" not in err and "hunter2" not in err


def _run(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    config = tmp_path / "quick.toml"  # give up after 2 attempts, quickly
    config.write_text("[capture]\nreconnect_attempts = 2\nreconnect_initial = 0.1\nopen_timeout = 2.0\n")
    return subprocess.Popen([sys.executable, "-m", "stream.cli", "run", *args, "--config", str(config),
                             "--max-frames", "5", "--publish", f"tcp://127.0.0.1:{free_port()}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_unreachable_rtsp_url_prints_our_lines_only(tmp_path, tiny_bundle):
    """`twostream run rtsp://...` with nothing listening: our one-line messages, no raw FFmpeg/OpenCV lines;
    with --verbose the same chatter appears, through our logging (prefixed, credentials masked)."""
    port = free_port()
    url = f"rtsp://admin:hunter2@127.0.0.1:{port}/x"
    shown = f"rtsp://admin:***@127.0.0.1:{port}/x"
    model = ["--model", str(tiny_bundle)]
    quiet = _run([url, *model], tmp_path)
    verbose = _run([url, *model, "--verbose"], tmp_path)
    out, err = quiet.communicate(timeout=120)
    vout, verr = verbose.communicate(timeout=120)

    assert quiet.returncode == 1, err
    lines = err.splitlines()
    assert not [ln for ln in lines if ln.startswith("[") or "cap.cpp" in ln or "Connection refused" in ln], err
    assert f"twostream: {shown}: cannot open; retrying in 0.1 s (attempt 1)" in lines
    assert lines[-1] == f"twostream run: source 127.0.0.1_x: {shown}: cannot open (gave up after 2 attempts)"
    assert all(ln.startswith("twostream") for ln in lines), err
    assert "hunter2" not in err + out

    assert verbose.returncode == 1, verr
    vlines = verr.splitlines()
    assert all(ln.startswith("twostream") for ln in vlines), verr
    chatter = [ln for ln in vlines if ln.startswith("twostream: ts-capture:0: ")]
    assert any(re.search(r"\[tcp @ 0x[0-9a-f]+\] Connection to tcp://127\.0\.0\.1:\d+.*refused", ln)
               for ln in chatter), verr
    assert any("[ WARN:" in ln and "cap.cpp" in ln for ln in chatter), verr
    assert "hunter2" not in verr + vout
