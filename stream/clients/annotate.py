"""`twostream run --annotate OUT.mp4`: the replayed video with the predictions drawn on it.

A post-pass after the run: the file is decoded again and every frame gets the latest
prediction whose window ended at or before it (prediction `frame` <= frame index), so
the drawing is frame-accurate whatever the pace was and whatever was dropped on the way.
Frames before the first window show that no prediction exists yet.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stream.core.errors import ConfigError, SourceError
from stream.runtime.sources import SourceSpec

SUFFIXES = (".mp4", ".m4v", ".mov")


def check_annotate(out: str, specs: list[SourceSpec]) -> Path:
    """Fail before the run when --annotate cannot work: one video file source, a writable .mp4 path."""
    if len(specs) != 1 or specs[0].kind != "file":
        got = ", ".join(s.display for s in specs)
        raise ConfigError(f"--annotate needs exactly one video file SOURCE (got {got}); live sources are not recorded")
    path = Path(out)
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"--annotate {out!r}: the output must be an MP4 file ({', '.join(SUFFIXES)})")
    if not path.parent.is_dir():
        raise ConfigError(f"--annotate {out!r}: directory {str(path.parent)!r} does not exist")
    if path.exists() and path.resolve() == Path(specs[0].target).resolve():
        raise ConfigError(f"--annotate {out!r}: would overwrite the input video")
    return path


def _font_scale(width: int) -> float:
    return float(np.clip(width / 640.0, 0.3, 1.2))


def draw_prediction(frame: np.ndarray, pred: dict | None) -> np.ndarray:
    """Draw (in place) a dark band at the top with the fused top-k as score bars and each stream's top-1."""
    h, w = frame.shape[:2]
    scale = _font_scale(w)
    thick = max(1, int(round(scale * 1.5)))
    line = max(8, int(round(24 * scale)))
    pad = max(2, int(round(6 * scale)))
    top = pred["top"] if pred else []
    rows = (len(top) if pred else 3) + 1  # same band height before the first window: no jump
    band = min(h, pad * 2 + line * rows)
    # darken rather than paint over, so the scene stays visible under the labels
    frame[:band] = (frame[:band].astype(np.uint16) * 2 // 5).astype(np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    if pred is None:
        cv2.putText(frame, "no prediction yet", (pad, pad + line - pad), font, scale * 0.8, (200, 200, 200), thick,
                    cv2.LINE_AA)
        return frame
    bar_w = w - 2 * pad
    for i, entry in enumerate(top):
        y0 = pad + i * line
        colour = (60, 200, 60) if i == 0 else (150, 150, 150)
        cv2.rectangle(frame, (pad, y0 + 2), (pad + int(round(bar_w * entry["score"])), y0 + line - 2), colour,
                      thickness=-1)
        cv2.putText(frame, f"{entry['label']} {entry['score']:.2f}", (pad + 2, y0 + line - pad), font, scale * 0.8,
                    (255, 255, 255), thick, cv2.LINE_AA)
    s, t = pred["streams"]["spatial"], pred["streams"]["temporal"]
    y = pad + len(top) * line + line - pad
    cv2.putText(frame, f"S {s['label']} {s['score']:.2f}  T {t['label']} {t['score']:.2f}", (pad + 2, y), font,
                scale * 0.6, (230, 230, 120), max(1, thick - 1), cv2.LINE_AA)
    return frame


def write_annotated(video: str, out: Path, predictions: list[dict], *, frames: int | None = None) -> int:
    """Re-decode `video` and write its first `frames` frames (all when None) with predictions drawn.

    Returns the number of frames written."""
    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise SourceError(f"{video}: cannot be opened to annotate")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if 0 < fps < 1000 else 25.0
    ok, frame = cap.read()
    if not ok:
        cap.release()
        raise SourceError(f"{video}: no frame could be decoded to annotate")
    h, w = frame.shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        cap.release()
        raise ConfigError(f"--annotate {str(out)!r}: cannot open an mp4v writer for {w}x{h}")
    ordered = sorted(predictions, key=lambda p: (p["frame"], p.get("seq", 0)))
    k, current, n = 0, None, 0
    try:
        while ok and (frames is None or n < frames):
            while k < len(ordered) and ordered[k]["frame"] <= n:
                current = ordered[k]
                k += 1
            writer.write(draw_prediction(frame, current))
            n += 1
            ok, frame = cap.read()
    finally:
        writer.release()
        cap.release()
    return n
