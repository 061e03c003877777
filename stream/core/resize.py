"""Area downscaling (cv2.INTER_AREA's result) as two small float32 matrix products: the runtime's and
training's one resize, via stream.core.flow.resize_frame.

cv2.INTER_AREA with a non-integer ratio (a 320x240 camera to 112x112: 20/7 and 15/7) runs a scalar loop:
0.32-0.34 ms per frame here, as much as decoding the H.264 frame and the largest piece of the capture
stage's per-frame cost. Area weights repeat with a period of w / gcd(w, size) input pixels, so the
resize is a batched (oy x by) matrix product down the rows and a (bx x ox) one along them, both
through BLAS: 0.15 ms at 320x240, 0.44 vs 1.36 ms at 640x480, 2.6 vs 3.9 ms at 1280x720 (twostream
bench `stages`). The result equals cv2.INTER_AREA except for +-1 on about 0.05 % of the pixels, where
float32 sums in a different order round the other way (tests/test_resize.py). Integer ratios (cv2's
fast exact path), upscaling and periods too long to pay off stay with cv2.
"""
from __future__ import annotations

import functools
import math
import threading

import cv2
import numpy as np

MAX_PERIOD = 96  # input pixels per weight block; beyond this the matrices grow past cv2's own cost


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_in, n_out) float64: the share of input pixel i in output pixel j (overlap length / ratio)."""
    ratio = n_in / n_out
    weights = np.zeros((n_in, n_out))
    for j in range(n_out):
        lo, hi = j * ratio, (j + 1) * ratio
        for i in range(int(math.floor(lo)), min(n_in, int(math.ceil(hi)))):
            weights[i, j] = (min(hi, i + 1) - max(lo, i)) / ratio
    return weights


class _BlockArea:
    """Area resize of (h, w, ch) uint8 to (size, size, ch) for one input shape."""

    def __init__(self, h: int, w: int, ch: int, size: int):
        gx, gy = math.gcd(w, size), math.gcd(h, size)
        self.h, self.w, self.ch, self.size = h, w, ch, size
        self.blocks_x, self.blocks_y = gx, gy
        self.in_x, self.in_y = w // gx, h // gy  # input pixels per block (the weights' period)
        self.rows = area_weights(h, size)[:self.in_y, :size // gy].T.astype(np.float32).copy()  # (oy, by)
        self.cols = area_weights(w, size)[:self.in_x, :size // gx].astype(np.float32).copy()  # (bx, ox)
        self._local = threading.local()

    def _buffers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        # Reused per thread: allocating the ~1 MB float copies per frame went through mmap and page faults
        # each time (1.0 ms of CPU per 320x240 frame instead of 0.14).
        bufs = getattr(self._local, "bufs", None)
        if bufs is None:
            bufs = self._local.bufs = (
                np.empty((self.blocks_y, self.in_y, self.w * self.ch), np.float32),
                np.empty((self.blocks_y, self.rows.shape[0], self.w * self.ch), np.float32),
                np.empty((self.size * self.ch * self.blocks_x, self.in_x), np.float32),
                np.empty((self.size * self.ch * self.blocks_x, self.cols.shape[1]), np.float32))
        return bufs

    def __call__(self, image: np.ndarray) -> np.ndarray:
        x, down, lines, out = self._buffers()
        np.copyto(x, image.reshape(x.shape), casting="unsafe")
        np.matmul(self.rows, x, out=down)  # every column resized down the rows
        # columns last, so one product along the rows resizes every (row, channel) line at once
        by_line = down.reshape(self.size, self.w, self.ch).transpose(0, 2, 1)
        np.copyto(lines.reshape(self.size, self.ch, self.w), by_line)
        np.matmul(lines, self.cols, out=out)
        np.rint(out, out=out)
        return out.reshape(self.size, self.ch, self.size).transpose(0, 2, 1).astype(np.uint8)


@functools.lru_cache(maxsize=16)
def _resizer(h: int, w: int, ch: int, size: int) -> _BlockArea | None:
    if h <= size or w <= size or (h % size == 0 and w % size == 0):
        return None  # upscaling or an integer ratio: cv2 is exact and fast there
    if w // math.gcd(w, size) > MAX_PERIOD or h // math.gcd(h, size) > MAX_PERIOD:
        return None
    return _BlockArea(h, w, ch, size)


def area_resize(image: np.ndarray, size: int) -> np.ndarray:
    """(h, w[, ch]) uint8 -> (size, size[, ch]) as cv2.INTER_AREA resizes it (squashed)."""
    h, w = image.shape[:2]
    ch = image.shape[2] if image.ndim == 3 else 1
    block = _resizer(h, w, ch, size) if image.dtype == np.uint8 and image.flags.c_contiguous else None
    if block is None:
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    out = block(image)
    return out if image.ndim == 3 else out[..., 0]
