"""'none' through the real pipeline: a bundle's [policy] min_score and a background class make
`twostream run` publish "none" and change events to and from it; an explicit config value wins.

Real parts: a real (random, seeded) torch two-stream bundle exported to ONNX, the real demo video
decoded by OpenCV, the real multi-process pipeline, a real ZeroMQ subscriber on 127.0.0.1.
"""
from __future__ import annotations

import shutil

import numpy as np

from stream.clients.client import Change, Prediction
from tests.conftest import run_pipeline

FRAMES = "60"


def _run(bundle, repo_root, tmp_path, config: str):
    cfg = tmp_path / "run.toml"
    cfg.write_text(config)
    proc, msgs = run_pipeline(["--model", str(bundle), "--config", str(cfg), "--pace", "fast", "--max-frames", FRAMES,
                               "--stride", "2", f"demo={repo_root / 'assets' / 'demo.mp4'}"], expect_eos=1)
    assert proc.returncode == 0, proc.stderr[-2000:]
    preds = [m for m in msgs if isinstance(m, Prediction)]
    changes = [m for m in msgs if isinstance(m, Change)]
    assert preds and [p.seq for p in preds] == list(range(len(preds)))
    return preds, changes


def _with_policy(tiny_bundle, out, policy: str, labels: list[str] | None = None):
    shutil.copytree(tiny_bundle, out)
    toml = out / "bundle.toml"
    toml.write_text(toml.read_text() + "\n[policy]\n" + policy + "\n")
    if labels is not None:
        (out / "labels.txt").write_text("\n".join(labels) + "\n")
    return out


def _expected_changes(labels):
    out, prev = [], None
    for lab in labels:
        if lab != prev:
            out.append((prev, lab))
        prev = lab
    return out


def test_bundle_min_score_publishes_none_with_change_events(tiny_bundle, repo_root, tmp_path):
    # 1) raw decisions (threshold off on purpose in the config): the fused top-1 of every window
    raw, _ = _run(tiny_bundle, repo_root, tmp_path, '[policy]\nkind = "none"\nmin_score = 0.0\n')
    fused = [(p.fused.label, p.fused.score) for p in raw]
    assert [p.label for p in raw] == [f[0] for f in fused]
    scores = np.array([s for _, s in fused])
    threshold = float(np.round(np.median(scores), 6))
    assert (scores < threshold).any() and (scores >= threshold).any()
    # 2) the same bundle with [policy] min_score = median: the config leaves min_score to the bundle
    gated = _with_policy(tiny_bundle, tmp_path / "gated", f"min_score = {threshold!r}")
    preds, changes = _run(gated, repo_root, tmp_path, '[policy]\nkind = "none"\n')
    want = ["none" if s < threshold - 1e-9 else lab for lab, s in fused]
    assert [p.label for p in preds] == want
    assert "none" in want and any(w != "none" for w in want)
    # change events: exactly the transitions of the decided labels, to and from "none", each before its prediction
    assert [(c.from_label, c.to_label) for c in changes] == _expected_changes(want)
    assert any(c.to_label == "none" for c in changes) and any(c.from_label == "none" for c in changes)
    by_seq = {p.seq: p for p in preds}
    for c in changes:
        assert by_seq[c.seq].label == c.to_label and by_seq[c.seq].frame == c.frame
    # 3) a config that sets min_score wins over the bundle's
    preds, _ = _run(gated, repo_root, tmp_path, '[policy]\nkind = "none"\nmin_score = 0.0\n')
    assert [p.label for p in preds] == [f[0] for f in fused]


def test_background_class_is_published_as_none(tiny_bundle, repo_root, tmp_path):
    raw, _ = _run(tiny_bundle, repo_root, tmp_path, '[policy]\nkind = "none"\n')
    labels = (tiny_bundle / "labels.txt").read_text().split()
    top = [p.fused.label for p in raw]
    common = max(set(top), key=top.count)
    renamed = ["_background" if lab == common else lab for lab in labels]
    bg = _with_policy(tiny_bundle, tmp_path / "bg", 'background = "_background"', labels=renamed)
    preds, changes = _run(bg, repo_root, tmp_path, '[policy]\nkind = "none"\n')
    want = ["none" if lab == common else lab for lab in top]
    assert [p.label for p in preds] == want
    assert "_background" not in {p.label for p in preds} | {c.to_label for c in changes}
    assert [(c.from_label, c.to_label) for c in changes] == _expected_changes(want)
    # the scores stay visible: the background class is in `top` under its own name
    assert any(t.label == "_background" for p in preds for t in p.top)
