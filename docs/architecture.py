"""Draw docs/architecture.png, the data path of `twostream run` (run: python docs/architecture.py).

Boxes are processes (or the subscriber's side), cylinders-ish grey boxes are shared memory; solid arrows
carry data, dashed ones control. The PNG is checked in; this script is its source.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).with_name("architecture.png")

PROCESS = "#dbe9f6"
SHARED = "#e8e8e8"
OUTSIDE = "#f6ecd9"
SUPERVISOR = "#e3f1df"


def box(ax, x, y, w, h, title, lines=(), color=PROCESS, dashed=False):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08", fc=color, ec="#333333",
                                lw=1.2, ls="--" if dashed else "-"))
    ax.text(x + w / 2, y + h - 0.17, title, ha="center", va="top", fontsize=10.5, weight="bold")
    for i, line in enumerate(lines):
        ax.text(x + w / 2, y + h - 0.52 - 0.27 * i, line, ha="center", va="top", fontsize=8.2)


def arrow(ax, start, end, label="", dashed=False, label_offset=(0.0, 0.12), rad=0.0, color="#222222"):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=13, lw=1.3, color=color,
                                 ls="--" if dashed else "-", connectionstyle=f"arc3,rad={rad}"))
    if label:
        mx, my = (start[0] + end[0]) / 2 + label_offset[0], (start[1] + end[1]) / 2 + label_offset[1]
        ax.text(mx, my, label, ha="center", va="bottom", fontsize=7.8, color=color)


def main() -> None:
    fig, ax = plt.subplots(figsize=(15, 6.6))
    ax.set_xlim(0, 15)
    ax.set_ylim(0, 6.6)
    ax.axis("off")

    # top row: the data path
    y, h = 3.55, 1.9
    box(ax, 0.1, y, 1.75, h, "sources", ["video files", "rtsp:// http(s)://", "webcam index"], OUTSIDE)
    box(ax, 2.25, y, 2.0, h, "capture  × N", ["1 process per source", "decode, resize to S×S", "reconnect / backoff",
                                             "preview JPEGs"])
    box(ax, 4.65, y + 0.35, 1.35, 1.2, "frame rings", ["shm, per source"], SHARED)
    box(ax, 6.4, y, 2.0, h, "flow", ["1 process", "DIS (CPU) or CUDA", "quantised flow",
                                     "latest-frame for live"])
    box(ax, 8.8, y + 0.35, 1.35, 1.2, "flow rings", ["shm, per source"], SHARED)
    box(ax, 10.55, y, 2.15, h, "inference",
        ["1 process (1 per core", "if costly), batches", "of its sources", "engines + fusion"])
    box(ax, 13.1, y, 1.8, h, "clients", ["Subscriber", "subscribe, view", "eval-stream"], OUTSIDE)

    arrow(ax, (1.85, y + h / 2), (2.25, y + h / 2))
    arrow(ax, (4.25, y + h / 2), (4.65, y + h / 2))
    arrow(ax, (6.0, y + h / 2), (6.4, y + h / 2))
    arrow(ax, (8.4, y + h / 2), (8.8, y + h / 2))
    arrow(ax, (10.15, y + h / 2), (10.55, y + h / 2))
    # small events beside the rings (PUSH/PULL over ipc)
    arrow(ax, (4.25, y + 0.2), (6.4, y + 0.2), "doorbell / SourceEnded", label_offset=(0, -0.33))
    arrow(ax, (8.4, y + 0.2), (10.55, y + 0.2), "WindowReady", label_offset=(0, -0.33))

    # bottom row: the supervisor
    sy, sh = 0.35, 2.05
    box(ax, 5.0, sy, 7.7, sh, "supervisor  (the `twostream run` process)", [], SUPERVISOR)
    box(ax, 5.25, sy + 0.2, 2.1, 1.35, "stage table", ["start, watch, restart", "(bounded, backoff)"], "#ffffff")
    box(ax, 7.6, sy + 0.2, 2.2, 1.35, "Decider", ["policy + seq", "per source"], "#ffffff")
    box(ax, 10.05, sy + 0.2, 2.4, 1.35, "Publisher", ["ZeroMQ PUB, CURVE", "never blocks (SNDHWM)"], "#ffffff")
    board = ["shm, written by every stage:", "frames, drops, reconnects,", "last error per source"]
    box(ax, 0.3, sy + 0.25, 3.6, 1.7, "stats board", board, SHARED)

    arrow(ax, (11.6, y), (8.7, sy + 1.55), "WindowResult (fused scores)", rad=-0.15, label_offset=(0.55, 0.25))
    arrow(ax, (9.8, sy + 0.87), (10.05, sy + 0.87))
    ax.text(9.93, sy + 1.0, "msgs", ha="center", fontsize=7)
    arrow(ax, (12.45, sy + 0.87), (14.0, y), "prediction, change,\nstatus, eos, preview\n(wire schema 1)",
          rad=0.2, label_offset=(0.55, -0.2))
    arrow(ax, (3.4, y), (12.3, sy + 1.55), "previews, logs (PUSH)", dashed=True, rad=-0.06, color="#555555",
          label_offset=(-1.9, -0.3))
    arrow(ax, (5.25, sy + 1.2), (3.2, y), "spawn / restart\n(every stage)", dashed=True, rad=-0.25, color="#555555",
          label_offset=(-1.05, -0.1))
    arrow(ax, (3.9, sy + 1.1), (5.0, sy + 1.1), "status", dashed=True, color="#555555", label_offset=(0, 0.02))
    ax.text(7.5, 6.3, "twostream run: capture → flow → inference → decide → publish", ha="center", fontsize=13,
            weight="bold")
    ax.text(7.5, 5.95, "boxes: processes; grey: shared memory; solid: data; dashed: control", ha="center",
            fontsize=8.5, color="#555555")
    fig.savefig(OUT, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


if __name__ == "__main__":
    main()
