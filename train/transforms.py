"""Training augmentation on uint8 frame and quantised-flow groups (TSN: corner crop, scale jitter, flip).

One crop and one flip are drawn per sample and applied to every frame / flow field in it,
so a flow stack stays a coherent motion field. No torch here.
"""
from __future__ import annotations

import cv2
import numpy as np

SCALES = (1.0, 0.875, 0.75, 0.66)  # TSN multi-scale crop ratios of the short side
MAX_DISTORT = 1  # crop width and height scales may differ by at most one step (aspect jitter)


def flip_flow(q: np.ndarray) -> np.ndarray:
    """Mirror quantised flow (..., H, W, 2) left-right: flip the width axis and negate x.

    With quantize_flow's symmetric mapping [-bound, bound] -> [0, 255], negating x is 255 - q
    (dequantize_flow(255 - q) == -dequantize_flow(q) exactly); y is unchanged.
    """
    out = q[..., :, ::-1, :].copy()
    out[..., 0] = 255 - out[..., 0]
    return out


def flip_frames(frames: np.ndarray) -> np.ndarray:
    """Mirror RGB frames (..., H, W, 3) left-right."""
    return frames[..., :, ::-1, :].copy()


def sample_crop(height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """TSN multi-scale corner crop: (y, x, h, w) from SCALES x SCALES pairs and 5 fixed positions."""
    base = min(height, width)
    sizes = [int(base * s) for s in SCALES]
    pairs = [(h, w) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= MAX_DISTORT]
    crop_h, crop_w = pairs[rng.integers(len(pairs))]
    dy, dx = (height - crop_h) // 2, (width - crop_w) // 2
    # corners and centre: TSN's "corner cropping" so the net sees image borders, not only centres
    positions = [(0, 0), (0, 2 * dx), (2 * dy, 0), (2 * dy, 2 * dx), (dy, dx)]
    y, x = positions[rng.integers(len(positions))]
    return y, x, crop_h, crop_w


def crop_resize(images: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Crop (N, H, W, C) uint8 to box and resize back to size x size.

    Flow is resized as an image (magnitudes are not rescaled), as in TSN; the crop is at most
    a 1/0.66 zoom, which the network learns to tolerate.
    """
    y, x, h, w = box
    out = np.empty((images.shape[0], size, size, images.shape[-1]), dtype=images.dtype)
    for i, img in enumerate(images):
        crop = img[y:y + h, x:x + w]
        out[i] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR).reshape(size, size, -1)
    return out


def augment(images: np.ndarray, *, is_flow: bool, size: int, rng: np.random.Generator, flip: bool = True) -> np.ndarray:
    """Random corner crop + scale jitter + horizontal flip of one sample's frames or flow fields (N, H, W, C)."""
    box = sample_crop(images.shape[1], images.shape[2], rng)
    out = crop_resize(images, box, size)
    if flip and rng.random() < 0.5:
        out = flip_flow(out) if is_flow else flip_frames(out)
    return out
