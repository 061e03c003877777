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
