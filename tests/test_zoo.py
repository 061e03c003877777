"""Every bundle in models/zoo runs the real pipeline on the bundled demo clip (issue 13: the zoo runs from a
clean clone). The demo is weizmann4 actor3, whom the zoo bundles were trained on, so this checks loading, the
window inputs of each family and its fusion, not accuracy (docs/models.md holds the held-out numbers)."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ZOO = sorted(p.parent.name for p in (ROOT / "models" / "zoo").glob("*/bundle.toml"))
SETTLE = 20  # frames after a switch before a window counts (a window spans up to 11 frames, plus the policy)


def test_the_zoo_has_the_real_time_families():
    assert {"convfusion", "hidden", "i3d"} <= set(ZOO)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_bundle_labels_each_segment_of_the_demo(name, tmp_path):
    demo = json.loads((ROOT / "assets" / "demo.json").read_text())
    proc = subprocess.run([sys.executable, "-m", "stream.cli", "run", "--model", str(ROOT / "models" / "zoo" / name),
                           "--pace", "fast", "--print", "--json", "--stride", "5",
                           "--publish", f"ipc://{tmp_path}/pub", str(ROOT / "assets" / "demo.mp4")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    msgs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    preds = [m for m in msgs if m.get("event") == "prediction"]
    eos = [m for m in msgs if m.get("event") == "eos"]
    assert len(eos) == 1 and eos[0]["frames"] == demo["frames"] and eos[0]["dropped"] == 0
    assert preds and len(preds) == eos[0]["windows"]
    for seg in demo["segments"]:
        labels = Counter(p["label"] for p in preds if seg["start"] + SETTLE <= p["frame"] < seg["end"])
        assert labels and labels.most_common(1)[0][0] == seg["label"], (name, seg, labels)
