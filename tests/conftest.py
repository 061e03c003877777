"""Shared fixtures: where the real data lives, the repo root, a Python that runs the CLI."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from stream.core.ports import free_port  # noqa: F401  (for the test modules: `from conftest import free_port`)
from stream.quality.harness import run_and_collect

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


def tiny_weizmann_extraction(shared_data: Path, tmp_path_factory, *, name: str, size: int, max_frames: int) -> Path:
    """bend vs jack of weizmann4 actors 0-2, extracted (frames + DIS flow, the runtime's code) at `size` px,
    first `max_frames` frames: the tiny real dataset the training tests share."""
    import shutil

    from train.extract import extract_dataset

    src = tmp_path_factory.mktemp(name)
    for cls in ("bend", "jack"):
        (src / cls).mkdir()
        for a in (0, 1, 2):
            f = next((shared_data / "weizmann4" / cls).glob(f"*actor{a}*"))
            shutil.copy(f, src / cls / f.name)
    out = tmp_path_factory.mktemp(f"{name}_ext")
    extract_dataset(src, out, size=size, max_frames=max_frames, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A real (random, seeded) two-stream bundle: torch conv nets exported to ONNX; input 32, L=4, 4 labels."""
    from train.testing import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("tiny") / "bundle", num_classes=4, input_size=32, flow_length=4,
                            labels=["bend", "jack", "wave1", "wave2"])


def run_pipeline(args: list[str], *, timeout: float = 120.0, sources: list[str] | None = None,
                 expect_eos: int | None = None, extra_env: dict | None = None):
    """Run `twostream run ARGS --publish <free port>` as a subprocess while subscribing to its output.

    Returns (completed process, list of decoded messages in arrival order); see stream.quality.harness.
    """
    run = run_and_collect(args, timeout=timeout, sources=sources, expect_eos=expect_eos, extra_env=extra_env,
                          cwd=ROOT)
    return run.proc, run.messages


def run_bench(args: list[str], out: Path, *, timeout: float = 900.0):
    """`python -m stream.cli bench ARGS --json OUT` as a subprocess; (the JSON report, the process)."""
    import json
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "stream.cli", "bench", *args, "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc


def resolve(doc: dict, path: str):
    """The node at a slash-separated path of a bench report."""
    node = doc
    for part in path.split("/"):
        node = node[part]
    return node


@pytest.fixture
def capture_parts(tmp_path):
    """A capture loop's shared parts, in this process: frame ring (8 slots of 32x32 RGB), stats board, doorbell."""
    from stream.runtime.doorbell import Doorbell, create_doorbell
    from stream.runtime.shm import RingLayout, ShmRing, StatsBoard

    layout = RingLayout(ShmRing.new_name("tstest"), 8, (("frame_rgb", (32, 32, 3)),))
    ring = ShmRing(layout, create=True)
    stats = StatsBoard(ShmRing.new_name("tstest"), 1, create=True)
    bell = Doorbell(create_doorbell(str(tmp_path / "bell")))
    yield layout, ring, stats, bell
    bell.close()
    ring.close()
    ring.unlink()
    stats.close()
    stats.unlink()
