"""Pool per-fold `twostream family eval --json` files into one result per family and a markdown table.

  python -m train.families.report OUT.json TAG=FILE[,FILE...] ...
e.g. python -m train.families.report results/families/weizmann4_folds.json \
        i3d=runs/families/eval/i3d_val01.json,runs/families/eval/i3d_val23.json,...
Pooled accuracy = correct videos over all folds / all held-out videos (every video held out once).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def pool(files: list[str]) -> dict:
    folds, correct, videos, wcorrect, windows = [], {}, 0, {}, 0
    for f in files:
        r = json.loads(Path(f).read_text())
        folds.append({"file": f, "split": r.get("split", ""), "videos": r["videos"], "accuracy": r["accuracy"],
                      "window_accuracy": r.get("window_accuracy", {}),
                      "ms_per_window_batch1": r.get("ms_per_window_batch1", {})})
        videos += r["videos"]
        for k, acc in r["accuracy"].items():
            correct[k] = correct.get(k, 0) + round(acc * r["videos"])
        windows += r.get("windows", 0)
        for k, acc in r.get("window_accuracy", {}).items():
            wcorrect[k] = wcorrect.get(k, 0) + round(acc * r["windows"])
    return {"videos": videos, "pooled_accuracy": {k: round(c / max(1, videos), 4) for k, c in correct.items()},
            "correct": correct, "folds": folds, "windows": windows,
            "pooled_window_accuracy": {k: round(c / max(1, windows), 4) for k, c in wcorrect.items()}}


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    out = Path(argv[0])
    result = {}
    for spec in argv[1:]:
        tag, _, files = spec.partition("=")
        result[tag] = pool([f for f in files.split(",") if f])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print("| family | videos | per fold (fused) | pooled: networks | pooled fused | pooled window acc (fused) |")
    print("|---|---:|---|---|---:|---:|")
    for tag, r in result.items():
        per_fold = " / ".join(f"{f['accuracy']['fused']:.3f}" for f in r["folds"])
        nets = ", ".join(f"{k} {v:.3f}" for k, v in r["pooled_accuracy"].items() if k != "fused")
        wa = r["pooled_window_accuracy"].get("fused")
        wtext = f"{wa:.3f}" if wa is not None else "not measured"
        print(f"| {tag} | {r['videos']} | {per_fold} | {nets} | {r['pooled_accuracy']['fused']:.3f} | {wtext} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
