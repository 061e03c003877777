"""A real (tiny) training run on weizmann4 clips, then export -> ONNX -> ORT parity -> bundle -> eval."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import tiny_weizmann_extraction  # noqa: E402

from stream.cli import main as cli  # noqa: E402
from train.datasets import VideoItem  # noqa: E402
from train.extract import read_index  # noqa: E402


@pytest.fixture(scope="module")
def extraction(shared_data, tmp_path_factory):
    """bend vs jack, actors 0-2, 64 px, first 40 frames, extracted with the runtime flow code."""
    return tiny_weizmann_extraction(shared_data, tmp_path_factory, name="w4tiny", size=64, max_frames=40)


def test_short_training_run_lowers_the_loss(extraction):
    from train.engine import SegmentConsensus, set_train_mode
    from train.models import build_model
    from train.segments import SegmentDataset

    torch.manual_seed(0)
    index = read_index(extraction)
    items = [VideoItem(rel, v["label"]) for rel, v in index["videos"].items()]
    data = SegmentDataset(extraction, index, items, stream="temporal", segments=2, flow_length=4, train=False)
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.tensor([data[i][1] for i in range(len(data))])
    model = SegmentConsensus(build_model("efficientnet_lite0", 2, in_channels=8, weights="imagenet", dropout=0.0))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        set_train_mode(model, "train")
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    with torch.no_grad():
        final = float(torch.nn.functional.cross_entropy(model(x), y))
    assert losses[-1] < losses[0] * 0.8, losses
    assert np.isfinite(final)


def _train(extraction, out, stream, *extra):
    args = ["train", "--stream", stream, str(extraction), "--out", str(out), "--epochs", "1", "--batch-size", "2",
            "--segments", "2", "--flow-length", "4", "--max-steps", "1", "--no-progress", "--seed", "3",
            "--split", "group", "--group-regex", r"actor(\d+)", "--val-groups", "2", *extra]
    assert cli(args) == 0


def test_train_resume_export_and_eval_through_the_bundle(extraction, tmp_path):
    from engines.loader import open_bundle
    from train.engine import load_checkpoint

    _train(extraction, tmp_path / "s", "spatial")
    _train(extraction, tmp_path / "t", "temporal")
    for name in ("last.pt", "log.csv", "curves.png"):
        assert (tmp_path / "t" / name).is_file()
    ckpt = load_checkpoint(tmp_path / "t" / "last.pt")
    assert ckpt["meta"]["val_groups"] == ["2"] and ckpt["meta"]["in_channels"] == 8
    # resume continues at epoch 1 and keeps the history
    _train(extraction, tmp_path / "t", "temporal", "--epochs", "2", "--resume", str(tmp_path / "t" / "last.pt"))
    rows = list(csv.DictReader(open(tmp_path / "t" / "log.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1"]

    bundle = tmp_path / "bundle"
    assert cli(["export", str(tmp_path / "s"), str(tmp_path / "t"), str(bundle)]) == 0
    loaded = open_bundle(bundle)
    assert loaded.bundle.labels == ("bend", "jack") and loaded.bundle.flow_length == 4
    assert loaded.temporal.input_shape == (8, 64, 64) and loaded.spatial.input_shape == (3, 64, 64)
    prov = loaded.bundle.provenance
    assert "actor" in prov["split_temporal"] and prov["parity_max_abs_diff_temporal"] < 1e-3
    assert not list(bundle.glob("*.data"))

    # ORT matches the torch checkpoint on real windows with a batch size other than the export's
    from stream.core.offline import window_ends, window_inputs
    from train.extract import load_video
    from train.models import build_model

    index = read_index(extraction)
    frames, flows = load_video(extraction, next(iter(index["videos"].values())))
    ends = window_ends(len(frames), 4, 5)
    _, t_in = window_inputs(frames, flows, ends, flow_length=4, mean=(127,) * 3, std=(128,) * 3,
                            stacking="interleaved")
    net = build_model("efficientnet_lite0", 2, in_channels=8)
    net.load_state_dict(load_checkpoint(tmp_path / "t" / "last.pt")["model"])
    with torch.no_grad():
        want = net.eval()(torch.from_numpy(t_in)).numpy()
    assert np.abs(loaded.temporal.run(t_in) - want).max() < 1e-3

    result = tmp_path / "eval.json"
    assert cli(["eval", str(extraction), "--model", str(bundle), "--json", str(result), "--windows", "5",
                "--split", "group", "--group-regex", r"actor(\d+)", "--val-groups", "2"]) == 0
    r = json.loads(result.read_text())
    assert r["videos"] == 2 and set(r["per_class"]) == {"bend", "jack"}
    for key in ("spatial", "temporal", "fused"):
        assert 0.0 <= r[key]["accuracy"] <= 1.0
        assert sum(map(sum, r["confusion"][key])) == 2
    assert (tmp_path / "eval_confusion.png").is_file()
    # the checkpoints themselves evaluate to the same scores (exported on the fly, same engines)
    from_ckpt = tmp_path / "eval_ckpt.json"
    assert cli(["eval", str(extraction), "--model", str(tmp_path / "s"), str(tmp_path / "t"), "--json",
                str(from_ckpt), "--windows", "5", "--split", "group", "--group-regex", r"actor(\d+)",
                "--val-groups", "2"]) == 0
    c = json.loads(from_ckpt.read_text())
    for key in ("spatial", "temporal", "fused"):
        assert c[key]["accuracy"] == r[key]["accuracy"]
    assert c["per_video"] == r["per_video"]


def test_seeded_training_reproduces(extraction, tmp_path):
    from train.engine import load_checkpoint

    _train(extraction, tmp_path / "a", "spatial", "--split", "all")
    _train(extraction, tmp_path / "b", "spatial", "--split", "all")
    a = load_checkpoint(tmp_path / "a" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_make_tiny_bundle_loads_and_runs(tmp_path):
    from engines.loader import open_bundle
    from train.testing import make_tiny_bundle

    make_tiny_bundle(tmp_path / "b", num_classes=3, input_size=32, flow_length=2, labels=["a", "b", "c"], seed=1)
    loaded = open_bundle(tmp_path / "b")
    x = np.random.default_rng(0).uniform(-1, 1, size=(5, 4, 32, 32)).astype(np.float32)
    out = loaded.temporal.run(x)
    assert out.shape == (5, 3) and np.isfinite(out).all()
    assert loaded.bundle.labels == ("a", "b", "c")


def test_train_on_missing_extraction_is_a_clear_error(tmp_path, capsys):
    assert cli(["train", "--stream", "spatial", str(tmp_path)]) == 2
    assert "twostream extract" in capsys.readouterr().err


def test_int8_and_fp16_conversion_keep_the_runtime_interface(extraction, tmp_path):
    from engines.onnxrt import OnnxRuntimeEngine
    from stream.core.offline import window_ends, window_inputs
    from train.extract import load_video
    from train.quantize import compare, convert_fp16, quantize_int8
    from train.testing import make_tiny_bundle

    make_tiny_bundle(tmp_path / "b", num_classes=2, input_size=64, flow_length=4, seed=2)
    index = read_index(extraction)
    spatial = []
    for entry in index["videos"].values():
        frames, flows = load_video(extraction, entry)
        s, _ = window_inputs(frames, flows, window_ends(len(frames), 4, 6), flow_length=4, mean=(127,) * 3,
                             std=(128,) * 3, stacking="interleaved")
        spatial.append(s)
    real = np.concatenate(spatial)
    fp32 = OnnxRuntimeEngine(tmp_path / "b" / "spatial.onnx")
    ref = fp32.run(real)
    q8 = quantize_int8(tmp_path / "b" / "spatial.onnx", tmp_path / "s8.onnx", real)
    f16 = convert_fp16(tmp_path / "b" / "spatial.onnx", tmp_path / "s16.onnx")
    for path in (q8, f16):
        engine = OnnxRuntimeEngine(path)  # float32 in, (B, classes) out: the runtime feeds it unchanged
        assert engine.input_shape == (3, 64, 64) and engine.num_outputs == 2
        scale = float(np.abs(ref).max())
        assert compare(ref, path, real)["max_abs_diff"] < 0.1 * scale + 1e-3
    assert q8.stat().st_size > 0 and f16.stat().st_size < (tmp_path / "b" / "spatial.onnx").stat().st_size
