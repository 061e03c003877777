"""The runtime's area resize (stream.core.resize) against cv2.INTER_AREA on real decoded frames."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from stream.core import resize
from stream.core.flow import resize_frame


@pytest.fixture(scope="module")
def frames(shared_data):
    cap = cv2.VideoCapture(str(shared_data / "replay" / "fun_theory.mp4"))  # 1280x720 real footage
    out = []
    for i in range(60):
        ok, frame = cap.read()
        assert ok, "fun_theory.mp4 did not decode"
        if i % 15 == 0:
            out.append(frame)
    cap.release()
    return out


@pytest.mark.parametrize("w,h", [(320, 240), (640, 480), (256, 320), (340, 256), (1280, 720), (400, 300)])
def test_block_area_matches_cv2_inter_area(frames, w, h):
    size = 112
    # every camera size here takes the matrix path (none of them is an integer ratio or a too-long period)
    assert resize._resizer(h, w, 3, size) is not None
    differing, total = 0, 0
    for frame in frames:
        src = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        ours = resize.area_resize(src, size)
        ref = cv2.resize(src, (size, size), interpolation=cv2.INTER_AREA)
        assert ours.shape == ref.shape and ours.dtype == np.uint8
        diff = np.abs(ours.astype(int) - ref.astype(int))
        assert diff.max() <= 1, f"{w}x{h}: a pixel differs by {diff.max()}"
        differing += int((diff > 0).sum())
        total += diff.size
    assert differing / total < 0.005, f"{w}x{h}: {differing} of {total} pixels differ"


def test_area_weights_are_overlaps():
    # 5 pixels -> 2: ratio 2.5; output 0 = p0 + p1 + half of p2, output 1 = half of p2 + p3 + p4, each / 2.5
    weights = resize.area_weights(5, 2)
    np.testing.assert_allclose(weights, np.array([[1, 0], [1, 0], [0.5, 0.5], [0, 1], [0, 1]]) / 2.5)
    np.testing.assert_allclose(resize.area_weights(320, 112).sum(axis=0), 1.0)


def test_fallbacks_are_cv2_exactly(frames):
    small = cv2.resize(frames[0], (64, 64), interpolation=cv2.INTER_AREA)  # upscaling (weizmann4 is 64x64)
    double = cv2.resize(frames[0], (224, 224), interpolation=cv2.INTER_AREA)  # integer ratio
    gray = cv2.cvtColor(cv2.resize(frames[0], (320, 240)), cv2.COLOR_BGR2GRAY)
    for src in (small, double):
        np.testing.assert_array_equal(resize.area_resize(src, 112),
                                      cv2.resize(src, (112, 112), interpolation=cv2.INTER_AREA))
    out = resize.area_resize(gray, 112)
    assert out.shape == (112, 112)
    assert np.abs(out.astype(int) - cv2.resize(gray, (112, 112), interpolation=cv2.INTER_AREA).astype(int)).max() <= 1
    coprime = cv2.resize(frames[0], (500, 375), interpolation=cv2.INTER_AREA)  # 375 rows: a 375-pixel period
    assert resize._resizer(375, 500, 3, 112) is None
    np.testing.assert_array_equal(resize.area_resize(coprime, 112),
                                  cv2.resize(coprime, (112, 112), interpolation=cv2.INTER_AREA))
    sliced = frames[0][::2, ::2]  # not contiguous: cv2 handles it
    np.testing.assert_array_equal(resize.area_resize(sliced, 112),
                                  cv2.resize(sliced, (112, 112), interpolation=cv2.INTER_AREA))


@pytest.mark.parametrize("w,h", [(320, 240), (64, 64)])  # the matrix path and cv2's
def test_resize_frame_is_rgb(frames, w, h):
    src = cv2.resize(frames[0], (w, h), interpolation=cv2.INTER_AREA)
    rgb = resize_frame(src, 112)
    bgr = cv2.resize(src, (112, 112), interpolation=cv2.INTER_AREA)
    assert rgb.flags.c_contiguous and rgb.shape == (112, 112, 3)  # the ring and the networks take it as is
    assert np.abs(rgb.astype(int) - bgr[..., ::-1].astype(int)).max() <= 1
    assert np.abs(rgb.astype(int) - bgr.astype(int)).max() > 1  # channels really swapped
