"""CPU ms per frame of the pipeline's stage processes (`ts-*`) over a steady window of a running capacity level.

python cpu_window.py START LENGTH FRAMES_PER_S CAPTURES: waits until CAPTURES capture processes run, sleeps
START s, sums utime + stime of every ts-* process over LENGTH s, and prints ms per frame per stage.
"""
import collections
import os
import sys
import time


def snapshot() -> collections.Counter:
    ticks = collections.Counter()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            if not comm.startswith("ts-"):
                continue
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[comm.split(":")[0]] += int(fields[11]) + int(fields[12])
    return ticks


def captures() -> int:
    return sum(1 for name, _ in snapshot_names() if name.startswith("ts-capture"))


def snapshot_names():
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    yield f.read().strip(), pid
            except OSError:
                continue


def main() -> None:
    start, length, fps, wanted = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    deadline = time.time() + 120
    while time.time() < deadline and captures() < wanted:
        time.sleep(0.2)
    time.sleep(start)
    before, t0 = snapshot(), time.time()
    time.sleep(length)
    after, seconds = snapshot(), time.time() - t0
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stage in sorted(after):
        ms = (after[stage] - before[stage]) / tick / seconds / fps * 1000
        total += ms
        print(f"{stage}: {ms:.3f} ms/frame")
    print(f"total: {total:.3f} ms/frame ({total * fps / 1000 / os.cpu_count() * 100:.0f}% of machine)")


if __name__ == "__main__":
    main()
