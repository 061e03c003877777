"""Shipped bundles name clean commits (issue 12, point 4): no `-dirty`, and every commit key is a hash."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = sorted(p.parent for p in (ROOT / "models").rglob("bundle.toml"))
HASH = re.compile(r"^[0-9a-f]{7,40}$")


def test_models_has_bundles():
    assert ROOT / "models" / "default" in BUNDLES


@pytest.mark.parametrize("bundle", BUNDLES, ids=[str(b.relative_to(ROOT)) for b in BUNDLES])
def test_bundle_provenance_names_clean_commits(bundle):
    text = (bundle / "bundle.toml").read_text()
    assert "-dirty" not in text, f"{bundle}: provenance names an uncommitted working tree"
    provenance = tomllib.loads(text).get("provenance", {})
    commits = {k: v for k, v in provenance.items() if k.endswith("commit") or "_commit_" in k}
    assert commits, f"{bundle}: no commit in [provenance]"
    for key, value in commits.items():
        assert HASH.match(str(value)), f"{bundle}: {key} = {value!r} is not a commit hash"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def test_git_commit_ignores_untracked_and_ignored_outputs(tmp_path):
    from train.cmd_train import git_commit

    _git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text("/runs/\n")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    head = _git(tmp_path, "rev-parse", "--short", "HEAD").strip()
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "last.pt").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("untracked")
    assert git_commit(tmp_path) == head
    (tmp_path / "a.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == head + "-dirty"


def test_background_script_names_a_non_default_base(tmp_path):
    spec = importlib.util.spec_from_file_location("train_default_background",
                                                  ROOT / "scripts" / "train_default_background.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    base = tmp_path / "runs" / "bundle_both"
    base.mkdir(parents=True)
    (base / "bundle.toml").write_text('[provenance]\nexport_commit = "abc1234"\n')
    assert mod.base_description(base, root=tmp_path) == "runs/bundle_both (export commit abc1234)"
    assert mod.base_description(ROOT / "models" / "default").startswith("models/default at commit ")
