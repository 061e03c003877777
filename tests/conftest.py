"""Shared fixtures: where the real data lives, the repo root, a Python that runs the CLI."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """TWOSTREAM_DATA, else ../shared/data beside the repo, else None."""
    env = os.environ.get("TWOSTREAM_DATA")
    path = Path(env) if env else ROOT.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("real data not found: set TWOSTREAM_DATA or put ../shared/data beside the repo")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def twostream_cmd() -> list[str]:
    """The CLI as a subprocess command line, using this interpreter."""
    return [sys.executable, "-m", "stream.cli"]


def count_frames(path) -> int:
    """Frames OpenCV actually decodes (independent of the pipeline)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A real (random, seeded) two-stream bundle: torch conv nets exported to ONNX; input 32, L=4, 4 labels."""
    from train.testing import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("tiny") / "bundle", num_classes=4, input_size=32, flow_length=4,
                            labels=["bend", "jack", "wave1", "wave2"])


def run_pipeline(args: list[str], *, timeout: float = 120.0, sources: list[str] | None = None,
                 expect_eos: int | None = None, extra_env: dict | None = None):
    """Run `twostream run ARGS --publish <free port>` as a subprocess while subscribing to its output.

    Returns (completed process, list of decoded messages in arrival order). Collection stops at
    process exit (plus a short drain) or after `expect_eos` end-of-stream messages.
    """
    import subprocess
    import time

    from stream.clients.client import EndOfStream, Subscriber

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    env = dict(os.environ, **(extra_env or {}))
    messages = []
    with Subscriber(endpoint, sources=sources, status=True, timeout=0.2) as sub:
        proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "run", *args, "--publish", endpoint],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.time() + timeout
        eos = 0
        exited_at = None
        while time.time() < deadline:
            try:
                msg = sub.recv()
                messages.append(msg)
                if isinstance(msg, EndOfStream):
                    eos += 1
                    if expect_eos is not None and eos >= expect_eos:
                        break
            except TimeoutError:
                if proc.poll() is not None:
                    exited_at = exited_at or time.time()
                    if time.time() - exited_at > 0.5:
                        break
        try:
            out, err = proc.communicate(timeout=max(5.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), messages
