"""Pipeline frames/s of model bundles: `twostream run --model BUNDLE --pace fast --max-frames N CLIP --print`.

frames/s = frames processed / wall time of the whole command (start-up included, so a floor), with the
1-minute load average before and after (the CPU is shared). Writes one JSON row per bundle.
usage: python benchmarks/families/pipeline_fps.py OUT.json CLIP FRAMES BUNDLE...
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    out, clip, frames, bundles = argv[0], argv[1], int(argv[2]), argv[3:]
    rows = []
    for bundle in bundles:
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "stream.cli", "run", "--model", bundle, "--pace", "fast",
                               "--max-frames", str(frames), clip, "--print"],
                              capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - t0
        m = re.search(r"end of stream: (\d+) frames, (\d+) windows, (\d+) dropped", proc.stdout)
        row = {"bundle": bundle, "clip": clip, "returncode": proc.returncode, "wall_s": round(wall, 2),
               "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2)}
        if m:
            n, w, d = (int(x) for x in m.groups())
            row.update(frames=n, windows=w, dropped=d, frames_per_s=round(n / wall, 2))
        else:
            row["error"] = (proc.stderr.strip().splitlines() or ["no end-of-stream line"])[-1][:300]
        print(json.dumps(row), flush=True)
        rows.append(row)
    with open(out, "w") as f:
        json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
