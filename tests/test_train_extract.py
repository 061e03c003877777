"""Extraction reproduces the runtime's inputs exactly; flow flip negates x; corrupt videos are reported."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from stream.core.flow import FlowComputer, FlowSettings, dequantize_flow, quantize_flow, stack_flows, to_gray
from stream.core.offline import read_video, video_flows, window_ends, window_inputs
from train.extract import extract_dataset, load_video, read_index
from train.transforms import augment, flip_flow, flip_frames


@pytest.fixture(scope="module")
def small_dataset(shared_data, tmp_path_factory):
    """Two real weizmann4 classes, two clips each, plus one corrupt file."""
    root = tmp_path_factory.mktemp("w4small")
    for cls, actors in (("jack", (0, 1)), ("wave2", (2, 3))):
        (root / cls).mkdir()
        for a in actors:
            src = next((shared_data / "weizmann4" / cls).glob(f"*actor{a}*"))
            shutil.copy(src, root / cls / src.name)
    (root / "jack" / "broken_actor9.avi").write_bytes(b"RIFF\0\0\0\0AVI this is not a video" * 10)
    return root


def test_extraction_round_trips_to_runtime_values(small_dataset, tmp_path):
    out = tmp_path / "ext"
    index = extract_dataset(small_dataset, out, size=48, max_frames=30, workers=2, progress=False)
    assert len(index["videos"]) == 4
    assert list(index["failed"]) == ["jack/broken_actor9.avi"]  # reported, not silently dropped
    assert index["flow"] == FlowSettings().as_dict() and index["input_size"] == 48
    rel, entry = sorted(index["videos"].items())[0]
    frames, flows = load_video(out, entry)
    ref_frames = read_video(small_dataset / rel, 48, max_frames=30)
    ref_flows = video_flows(ref_frames, FlowSettings())
    assert np.array_equal(frames, ref_frames) and np.array_equal(flows, ref_flows)
    ends = window_ends(len(frames), 10, 5)
    got = window_inputs(frames, flows, ends, flow_length=10, mean=(127,) * 3, std=(128,) * 3, stacking="interleaved")
    want = window_inputs(ref_frames, ref_flows, ends, flow_length=10, mean=(127,) * 3, std=(128,) * 3,
                         stacking="interleaved")
    assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    # resume: nothing is recomputed, the index is complete again
    again = extract_dataset(small_dataset, out, size=48, max_frames=30, workers=1, progress=False)
    assert again["skipped_already_done"] == 4 and again["videos"] == index["videos"]
    assert read_index(out)["videos"] == index["videos"]


def test_extraction_refuses_other_settings_in_same_folder(small_dataset, tmp_path):
    from stream.core.errors import ConfigError

    out = tmp_path / "ext"
    (small_dataset / "jack" / "broken_actor9.avi").rename(tmp_path / "broken.avi")
    try:
        extract_dataset(small_dataset, out, size=32, max_frames=12, workers=1, progress=False)
        with pytest.raises(ConfigError, match="different settings"):
            extract_dataset(small_dataset, out, size=40, max_frames=12, workers=1, progress=False)
    finally:
        (tmp_path / "broken.avi").rename(small_dataset / "jack" / "broken_actor9.avi")


def test_flow_flip_negates_x_exactly():
    rng = np.random.default_rng(0)
    q = rng.integers(0, 256, size=(3, 16, 20, 2), dtype=np.uint8)
    f = flip_flow(q)
    assert np.array_equal(dequantize_flow(f[..., 0]), -dequantize_flow(q[..., ::-1, 0]))
    assert np.array_equal(f[..., 1], q[..., ::-1, 1])
    # in network input space too: the x channels of the stacked input change sign, y channels mirror
    s, s_f = stack_flows(q, "interleaved"), stack_flows(f, "interleaved")
    assert np.allclose(s_f[0::2], -s[0::2, :, ::-1]) and np.allclose(s_f[1::2], s[1::2, :, ::-1])


def test_flow_flip_matches_flow_of_mirrored_real_video(shared_data):
    frames = read_video(next((shared_data / "weizmann4" / "jack").glob("*actor0*")), 64, max_frames=12)
    settings = FlowSettings()
    compute = FlowComputer(settings)
    a, b = to_gray(frames[6]), to_gray(frames[7])
    q = quantize_flow(compute(a, b), settings.bound)
    mirrored = quantize_flow(compute(np.ascontiguousarray(a[:, ::-1]), np.ascontiguousarray(b[:, ::-1])),
                             settings.bound)
    flipped = flip_flow(q)
    dx_m, dx_f = dequantize_flow(mirrored[..., 0]), dequantize_flow(flipped[..., 0])
    moving = np.abs(dx_m) > 0.05
    assert moving.sum() > 20, "the clip should contain motion"
    # flipping the flow must agree in sign with the flow of the mirrored frames where things move
    assert np.mean(np.sign(dx_m[moving]) == np.sign(dx_f[moving])) > 0.85
    assert np.corrcoef(dx_m.ravel(), dx_f.ravel())[0, 1] > 0.8


def test_augment_keeps_shape_and_dtype():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(4, 40, 40, 2), dtype=np.uint8)
    out = augment(x, is_flow=True, size=40, rng=rng)
    assert out.shape == x.shape and out.dtype == np.uint8
    img = rng.integers(0, 256, size=(2, 40, 40, 3), dtype=np.uint8)
    assert np.array_equal(flip_frames(flip_frames(img)), img)
