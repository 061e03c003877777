"""Pool `twostream eval --json` results of cross-validation folds into one table (markdown).

usage: python -m train.report runs/eval/w4_val01.json runs/eval/w4_val23.json ...
Pooled accuracy = correct videos over all folds / videos over all folds (each video is
validated in exactly one fold when the folds are disjoint).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def pool(paths: list[Path]) -> dict:
    rows, totals = [], {"videos": 0, "spatial": 0.0, "temporal": 0.0, "fused": 0.0}
    for p in paths:
        r = json.loads(Path(p).read_text())
        n = r["videos"]
        accuracies = {k: r[k]["accuracy"] for k in ("spatial", "temporal", "fused")}
        rows.append({"fold": Path(p).stem, "videos": n, **accuracies, "split": r.get("split", "")})
        totals["videos"] += n
        for k in ("spatial", "temporal", "fused"):
            totals[k] += r[k]["accuracy"] * n
    for k in ("spatial", "temporal", "fused"):
        totals[k] /= max(1, totals["videos"])
    return {"folds": rows, "pooled": totals}


def markdown(result: dict) -> str:
    lines = ["| fold | videos | spatial | temporal | fused |", "|---|---:|---:|---:|---:|"]
    for r in result["folds"]:
        lines.append(f"| {r['fold']} | {r['videos']} | {r['spatial']:.3f} | {r['temporal']:.3f} | {r['fused']:.3f} |")
    t = result["pooled"]
    lines.append(f"| **pooled** | {t['videos']} | **{t['spatial']:.3f}** | **{t['temporal']:.3f}** "
                 f"| **{t['fused']:.3f}** |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(pool([Path(a) for a in sys.argv[1:]])))
