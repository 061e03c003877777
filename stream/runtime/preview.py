"""Preview frames: small JPEGs of what each camera sees, published beside the predictions for `twostream view`.

Encoded in the capture process from the decoded frame at its own resolution (the rings
only hold model-size, squashed frames), rate-limited by wall-clock time, and sent to the
supervisor over a PUSH socket that drops instead of blocking. With preview off the
capture loop does nothing extra per frame: no encoder exists and no socket is opened.

Published as a 3-part message on `twostream/<source>/preview`:
[topic, JSON header {schema, event: "preview", source, frame, t_capture, width, height}, JPEG bytes].
`frame` uses the same numbering as a prediction's `frame`, so a view can pair them.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class PreviewFrame:
    """Capture -> supervisor (pickled over the local results socket)."""

    source: int
    frame: int
    t_capture: float
    width: int
    height: int
    jpeg: bytes


def preview_size(width: int, height: int, target_width: int) -> tuple[int, int]:
    """(w, h) scaled to `target_width` keeping the aspect ratio; never upscaled; even sizes for codecs."""
    if width <= target_width:
        return width, height
    h = max(2, int(round(height * target_width / width)))
    return target_width, h - (h % 2)


class PreviewEncoder:
    """Encodes at most `fps` previews per second of wall-clock time (0 < fps)."""

    def __init__(self, *, source: int, width: int, fps: float, quality: int):
        self.source = source
        self.width = width
        self.period = 1.0 / fps
        self.params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        self.next = float("-inf")

    def due(self, t: float) -> bool:
        return t >= self.next

    def encode(self, frame_bgr: np.ndarray, *, frame: int, t_capture: float) -> PreviewFrame | None:
        """JPEG of `frame_bgr` downscaled to the preview width; None when encoding failed (never raises)."""
        # A schedule, not "period since the last one": frame-time jitter then cannot lower the average rate.
        self.next = self.next + self.period if t_capture - self.next < self.period else t_capture + self.period
        h, w = frame_bgr.shape[:2]
        pw, ph = preview_size(w, h, self.width)
        small = frame_bgr if (pw, ph) == (w, h) else cv2.resize(frame_bgr, (pw, ph), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", small, self.params)
        if not ok:
            return None
        return PreviewFrame(source=self.source, frame=frame, t_capture=t_capture, width=pw, height=ph,
                            jpeg=buf.tobytes())
