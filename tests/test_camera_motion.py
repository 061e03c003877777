"""Camera-motion robustness: per-field flow subtraction (runtime = extraction) and camera-motion augmentation."""
from __future__ import annotations

import shutil
import threading

import cv2
import numpy as np
import pytest

from engines.bundle import read_bundle, write_bundle_toml
from stream.core.errors import BundleError, ConfigError
from stream.core.flow import FlowComputer, FlowSettings, dequantize_flow, quantize_flow, subtract_camera_motion
from stream.core.offline import read_video, video_flows
from train.extract import extract_dataset, load_flow_variants, load_video, read_index


def _texture(size: int, seed: int) -> np.ndarray:
    """Smooth random grey texture (uint8): DIS finds unambiguous motion on it everywhere."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size // 4, size // 4), dtype=np.uint8)
    return cv2.GaussianBlur(cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC), (5, 5), 1.0)


def _shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _scene(size=112, cam=(0.0, 0.0), obj=(0.0, 0.0)):
    """Background moved by the camera, and a 48x48 textured object (at 32..80) moved by camera + its own motion."""
    background = _shift(_texture(size, 1), *cam)
    obj_tex = _texture(48, 2)
    x0, y0 = int(round(32 + cam[0] + obj[0])), int(round(32 + cam[1] + obj[1]))
    out = background.copy()
    out[y0:y0 + 48, x0:x0 + 48] = obj_tex
    return out


def test_subtraction_removes_global_translation_keeps_object_motion():
    before = _scene()
    after = _scene(cam=(3.0, -2.0), obj=(6.0, 0.0))  # camera pans (3, -2); the object also moves 6 px right
    # DIS medium: the fast preset underestimates a 6 px motion of a small object (the subject here is subtraction)
    raw = FlowComputer(FlowSettings(preset="medium"))(before, after)
    med = FlowComputer(FlowSettings(preset="medium", subtract="median"))(before, after)
    mean = FlowComputer(FlowSettings(preset="medium", subtract="mean"))(before, after)
    # Without subtraction the whole field carries the pan.
    assert np.allclose(np.median(raw.reshape(-1, 2), axis=0), (3.0, -2.0), atol=0.5)
    # Median subtraction: the global motion is gone (median ~0), the background is still...
    assert np.allclose(np.median(med.reshape(-1, 2), axis=0), 0.0, atol=0.05)
    background = np.ones(before.shape, bool)
    background[24:90, 24:96] = False
    assert np.abs(np.median(med[background], axis=0)).max() < 0.3
    # ...and the object's own motion survives (about +6 px in x relative to the scene).
    inside = med[40:72, 40:72]
    assert np.median(inside[..., 0]) > 4.0 and abs(np.median(inside[..., 1])) < 1.5
    # Mean subtraction: zero mean, the object still stands out.
    assert np.allclose(mean.reshape(-1, 2).mean(axis=0), 0.0, atol=1e-3)
    assert np.median(mean[40:72, 40:72][..., 0]) > 4.0
    # Quantised: the background lands on the "no motion" code, not on the pan's code.
    q = quantize_flow(med, 20.0)
    assert np.abs(np.median(dequantize_flow(q[background]), axis=0)).max() < 0.02


def test_subtraction_settings_validated_and_none_is_identity():
    with pytest.raises(BundleError, match="subtract"):
        FlowSettings(subtract="average").validate()
    f = np.random.default_rng(0).standard_normal((8, 8, 2)).astype(np.float32)
    assert subtract_camera_motion(f, "none") is f
    out = subtract_camera_motion(f, "median")
    assert out.dtype == np.float32 and out.shape == f.shape
    assert np.allclose(out + np.median(f.reshape(-1, 2), axis=0), f, atol=1e-6)
    # a runtime-sized field goes through cv2.subtract: bit-identical to numpy's float32 difference
    g = np.random.default_rng(1).standard_normal((112, 112, 2)).astype(np.float32) * 3
    for how, centre in (("median", np.median(g.reshape(-1, 2), axis=0)), ("mean", g.reshape(-1, 2).mean(axis=0))):
        got = subtract_camera_motion(g, how)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, g - centre.astype(np.float32), rtol=0, atol=1e-6 if how == "mean" else 0)
    # as_dict only names subtract when used, so old extractions/checkpoints compare equal to the default
    assert "subtract" not in FlowSettings().as_dict()
    assert FlowSettings(**FlowSettings(subtract="mean").as_dict()).subtract == "mean"


def _bundle_dir(tmp_path, flow: FlowSettings):
    d = tmp_path / "bundle"
    d.mkdir(exist_ok=True)
    (d / "labels.txt").write_text("a\nb\n")
    for name in ("spatial.onnx", "temporal.onnx"):
        (d / name).write_bytes(b"x")  # read_bundle does not load networks
    write_bundle_toml(d, input_size=48, mean=(127,) * 3, std=(128,) * 3, flow=flow, flow_length=4,
                      fusion_weights={"spatial": 1.0, "temporal": 1.5}, arch="t", provenance={})
    return d


def test_subtract_round_trips_through_bundle_toml_and_old_bundles_read_none(tmp_path):
    d = _bundle_dir(tmp_path, FlowSettings(subtract="median"))
    assert 'subtract = "median"' in (d / "bundle.toml").read_text()
    assert read_bundle(d).flow.subtract == "median"
    old = "\n".join(line for line in (d / "bundle.toml").read_text().splitlines() if not line.startswith("subtract"))
    (d / "bundle.toml").write_text(old)
    assert read_bundle(d).flow.subtract == "none"  # a bundle written before the setting existed: raw flow
    (d / "bundle.toml").write_text(old.replace("[flow]", '[flow]\nsubtract = "avg"'))
    with pytest.raises(BundleError, match=r"flow\.subtract = 'avg'"):
        read_bundle(d)


@pytest.fixture(scope="module")
def tiny_dataset(shared_data, tmp_path_factory):
    """Two real weizmann4 classes, one clip each."""
    root = tmp_path_factory.mktemp("w4cm")
    for cls, actor in (("jack", 0), ("wave2", 1)):
        (root / cls).mkdir()
        src = next((shared_data / "weizmann4" / cls).glob(f"*actor{actor}*"))
        shutil.copy(src, root / cls / src.name)
    return root


def test_runtime_flow_stage_matches_extraction_with_subtraction(tiny_dataset, tmp_path):
    """The flow stage of `twostream run`, configured from a bundle with subtract = median, writes
    byte-identical quantised flow to what `twostream extract --flow-subtract median` stored."""
    from stream.core.config import PipelineSettings
    from stream.runtime.flow_stage import FlowJob, _advance, _SourceFlow
    from stream.runtime.shm import RingLayout, ShmRing, StatsBoard

    size, n = 48, 24
    flow = FlowSettings(subtract="median")
    index = extract_dataset(tiny_dataset, tmp_path / "ext", size=size, flow=flow, max_frames=n, workers=1,
                            progress=False)
    assert index["flow"]["subtract"] == "median"
    rel, entry = sorted(index["videos"].items())[0]
    frames, extracted = load_video(tmp_path / "ext", entry)
    assert not np.array_equal(extracted, video_flows(frames, FlowSettings()))  # subtraction changed something

    bundle_flow = read_bundle(_bundle_dir(tmp_path, flow)).flow  # what the runtime gets from bundle.toml
    frame_ring = RingLayout(ShmRing.new_name("tstcf"), 64, (("frame_rgb", (size, size, 3)),))
    flow_ring = RingLayout(ShmRing.new_name("tstcw"), 64, (("flow", (size, size, 2)), ("frame_rgb", (size, size, 3))))
    stats = StatsBoard(ShmRing.new_name("tstcs"), 1, create=True)
    rings = [ShmRing(frame_ring, create=True), ShmRing(flow_ring, create=True)]
    job = FlowJob(frame_rings=(frame_ring,), flow_rings=(flow_ring,), live=(False,), stats_name=stats.name,
                  flow_settings=bundle_flow, flow_length=4, pipeline=PipelineSettings(stride=5, live_queue=4),
                  in_endpoint="", out_endpoints=("",))

    class Sink:
        def send_pyobj(self, msg):
            pass

    src = _SourceFlow(0, job)
    try:
        for i, f in enumerate(frames):
            rings[0].write(frame=i, t_capture=0.0, frame_rgb=f)
        _advance(src, job, stats, Sink(), threading.Event())
        # one slot per frame; the flow ending at frame i is in slot i (the first frame has none)
        assert rings[1].written == len(frames)
        runtime = np.stack([rings[1].read(i, "flow") for i in range(1, len(frames))])
    finally:
        src.frames.close()
        src.flows.close()
        for r in rings:
            r.close()
            r.unlink()
        stats.close()
        stats.unlink()
    assert np.array_equal(runtime, extracted)


def test_camera_motion_extraction_moves_frames_reproducibly(tiny_dataset, tmp_path):
    from train.camera_motion import camera_motion_flows

    index = extract_dataset(tiny_dataset, tmp_path / "cm", size=48, max_frames=20, workers=1, progress=False,
                            camera_motion=2, camera_seed=3)
    assert index["camera_motion"]["variants"] == 2 and index["camera_motion"]["settings"]["noise"] == 0.0
    rel, entry = sorted(index["videos"].items())[0]
    frames, clean = load_video(tmp_path / "cm", entry)
    assert np.array_equal(clean, video_flows(read_video(tiny_dataset / rel, 48, max_frames=20), FlowSettings()))
    variants = load_flow_variants(tmp_path / "cm", entry)
    assert variants.shape == (3, *clean.shape) and np.array_equal(variants[0], clean)
    # The camera moved: the variants' flow differs from the clean flow and from each other,
    # and their global (median) motion is much larger than the tripod clip's.
    for v in (1, 2):
        assert np.abs(variants[v].astype(int) - clean).mean() > 1.0
    assert np.abs(variants[1].astype(int) - variants[2]).mean() > 1.0
    def glob(q):
        return np.abs(np.median(dequantize_flow(q).reshape(len(q), -1, 2), axis=1)).mean()

    assert glob(variants[1]) > 3 * glob(clean) + 0.005
    # Seeded: the same seed gives the same flow; another seed another trajectory.
    again = camera_motion_flows(str(tiny_dataset / rel), rel, size=48, flow=FlowSettings(), variants=2, seed=3,
                                max_frames=20)
    assert np.array_equal(again, variants[1:])
    other = camera_motion_flows(str(tiny_dataset / rel), rel, size=48, flow=FlowSettings(), variants=1, seed=4,
                                max_frames=20)
    assert not np.array_equal(other[0], variants[1])
    # Resuming into the folder with other augmentation settings is refused, not silently mixed.
    with pytest.raises(ConfigError, match="different settings"):
        extract_dataset(tiny_dataset, tmp_path / "cm", size=48, max_frames=20, workers=1, progress=False)
    with pytest.raises(ConfigError, match="different settings"):
        extract_dataset(tiny_dataset, tmp_path / "cm", size=48, max_frames=20, workers=1, progress=False,
                        camera_motion=1, camera_seed=3)


def test_training_draws_camera_motion_variants_only_when_training(tiny_dataset, tmp_path, monkeypatch):
    """SegmentDataset itself: which flow (clean or camera-moved variant) each sample it returns was cut from."""
    pytest.importorskip("torch")
    from stream.core.flow import stack_flows
    from train import segments as segments_module
    from train.datasets import VideoItem
    from train.segments import SegmentDataset

    extract_dataset(tiny_dataset, tmp_path / "cm", size=48, max_frames=20, workers=1, progress=False,
                    camera_motion=2)
    index = read_index(tmp_path / "cm")
    items = [VideoItem(rel, int(v["label"])) for rel, v in index["videos"].items()]
    common = dict(stream="temporal", segments=1, flow_length=4, cache=True)
    train = SegmentDataset(tmp_path / "cm", index, items, train=True, **common)
    val = SegmentDataset(tmp_path / "cm", index, items, train=False, **common)
    spatial = SegmentDataset(tmp_path / "cm", index, items, train=True, **{**common, "stream": "spatial"})
    assert train.camera_motion and not val.camera_motion and not spatial.camera_motion
    x1, _ = train[0]
    x2, _ = train[0]
    assert x1.shape == (1, 8, 48, 48) and np.array_equal(x1.numpy(), x2.numpy())  # reproducible per epoch

    # Crops and flips would hide where a sample came from: with them off, every sample must equal the stacked
    # flows of one variant at one window end, and that identifies the draw.
    monkeypatch.setattr(segments_module, "augment", lambda x, **kw: x)
    variants = [load_flow_variants(tmp_path / "cm", index["videos"][it.rel]) for it in items]  # (3, N-1, S, S, 2)

    def source_of(x, i):
        found = {v for v in range(3) for e in range(4, variants[i].shape[1] + 1)
                 if np.array_equal(x, stack_flows(variants[i][v, e - 4:e], "interleaved"))}
        assert len(found) == 1, found  # the three flows differ, so one variant matches
        return found.pop()

    drawn = []
    for epoch in range(12):
        train.set_epoch(epoch)
        val.set_epoch(epoch)
        for i in range(len(items)):
            drawn.append(source_of(train[i][0].numpy()[0], i))
            assert source_of(val[i][0].numpy()[0], i) == 0  # validation: always the clean flow
    assert set(drawn) == {0, 1, 2}  # clean and both variants are used
    assert max(drawn.count(v) for v in range(3)) < 0.75 * len(drawn)  # roughly uniform, not stuck on one
