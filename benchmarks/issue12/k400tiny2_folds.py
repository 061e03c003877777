"""k400tiny2 3-fold random split (seed 0, as docs/training.md) with and without near-duplicate grouping.

usage: python benchmarks/issue12/k400tiny2_folds.py ../shared/data/k400tiny2 > benchmarks/issue12/k400tiny2_folds.json
"""
import json
import sys
import time
from pathlib import Path

from train.datasets import (
    SplitSpec,
    fingerprint_distance,
    make_split,
    near_duplicate_groups,
    scan_folder_per_class,
    video_fingerprint,
)

root = Path(sys.argv[1])
dataset = scan_folder_per_class(root)
t0 = time.perf_counter()
prints = [video_fingerprint(root / it.rel) for it in dataset.items]
seconds = time.perf_counter() - t0
groups = near_duplicate_groups(prints)
joined = {}
for i, g in enumerate(groups):
    joined.setdefault(g, []).append(dataset.items[i].rel)
pairs = sorted((fingerprint_distance(prints[i], prints[j]), dataset.items[i].rel, dataset.items[j].rel)
               for i in range(len(prints)) for j in range(i + 1, len(prints)))
folds = {}
for grouped in (False, True):
    fold_of = {}
    for k in range(3):
        split = make_split(dataset, SplitSpec(kind="random", folds=3, fold=k, seed=0, group_duplicates=grouped))
        for it in split.val:
            fold_of[it.rel] = k
    folds["grouped" if grouped else "plain"] = fold_of
moved = sorted(r for r in folds["plain"] if folds["plain"][r] != folds["grouped"][r])
print(json.dumps({
    "command": "python benchmarks/issue12/k400tiny2_folds.py " + " ".join(sys.argv[1:]),
    "videos": len(dataset.items), "fingerprint_seconds_all_videos": round(seconds, 1),
    "near_duplicate_groups": [m for m in joined.values() if len(m) > 1],
    "closest_pairs": [{"distance": round(d, 4), "a": a, "b": b} for d, a, b in pairs[:5]],
    "fold_of_pair": {name: {r: folds[name][r] for r in ("typing/typing2.mp4", "typing/typing28.mp4")}
                     for name in folds},
    "videos_in_another_fold_with_grouping": moved,
    "fold_sizes": {name: [sum(1 for v in f.values() if v == k) for k in range(3)] for name, f in folds.items()},
}, indent=1))
