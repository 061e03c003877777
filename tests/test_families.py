"""Issue 13 families: exact 2D rewrite of inflated convs, conv fusion's one-window form, MotionNet's loss,
and per family a tiny real run: train a few steps on real weizmann4 clips, export (ORT vs torch parity),
a format-2 bundle the runtime's reader accepts, evaluation through ONNX Runtime."""
from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import tiny_weizmann_extraction  # noqa: E402

from stream.cli import main as cli  # noqa: E402
from train.extract import load_video, read_index  # noqa: E402

SPLIT = ["--split", "group", "--group-regex", r"actor(\d+)", "--val-groups", "2"]


@pytest.fixture(scope="module")
def extraction(shared_data, tmp_path_factory):
    """bend vs jack, actors 0-2, 32 px, first 24 frames."""
    return tiny_weizmann_extraction(shared_data, tmp_path_factory, name="w4fam", size=32, max_frames=24)


def test_temporal_conv_rewrite_equals_conv3d():
    from train.families.i3d import TemporalConv
    from train.models import build_model

    net = build_model("efficientnet_lite0", 4, 3)  # real Conv2dSame layers: dense stem and a strided depthwise conv
    torch.manual_seed(0)
    convs = ((net._conv_stem, 3), (net._blocks[1]._depthwise_conv, 96), (net._blocks[3]._depthwise_conv, 144))
    for conv, channels in convs:
        tc = TemporalConv(conv, 3, clip_length=5)
        with torch.no_grad():
            tc.weight.normal_()  # distinct taps: a wrong tap order or shift direction would show
        x = torch.randn(2 * 5, channels, 17, 17)
        rewritten = tc(x)
        tc.impl = "conv3d"
        reference = tc(x)
        assert rewritten.shape == reference.shape
        assert float((rewritten - reference).abs().max()) < 1e-4 * float(reference.abs().max())


def test_inflation_bootstraps_the_2d_kernel():
    from train.families.i3d import I3DLite0

    model = I3DLite0(4, clip_length=4, inflate="stem_last", weights=None)
    stem = model.backbone._conv_stem
    assert stem.weight.shape[2] == 3
    assert torch.allclose(stem.weight.sum(dim=2) / 3, stem.weight[:, :, 0], atol=1e-7)  # t equal copies of W/t
    names = model.temporal_convs()
    assert "backbone._conv_stem" in names and "backbone._blocks.8._depthwise_conv" in names
    assert "backbone._blocks.7._depthwise_conv" not in names
    assert len(I3DLite0(4, 4, "all_dw", weights=None).temporal_convs()) == 17
    assert I3DLite0(4, 4, "none", weights=None).temporal_convs() == []


@pytest.mark.parametrize("time_pool,Ts", [("none", [8] * 17), ("stem", [8] + [4] * 16),
                                          ("stem2", [8] + [4] * 5 + [2] * 11)])
def test_time_pool_reduces_T_and_exports_as_2d_ops(time_pool, Ts, tmp_path):
    import onnx

    from train.families.export import export_graph
    from train.families.i3d import I3DLite0, TemporalConv
    from train.onnx_export import ort_session

    torch.manual_seed(0)
    model = I3DLite0(3, clip_length=8, weights=None, time_pool=time_pool).eval()
    assert [m.T for m in model.modules() if isinstance(m, TemporalConv)] == Ts  # stem, then blocks 0..15
    assert model.out_length == Ts[-1]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, TemporalConv):
                m.weight.normal_(0.0, 0.3)  # distinct taps: T mixed up between clips would show
        x = torch.randn(3, 3, 8, 32, 32)
        y = model(x)
        # each clip alone gives its own logits (no mixing of frames across the batch)
        alone = torch.cat([model(x[i:i + 1]) for i in range(3)])
    assert y.shape == (3, 3) and torch.allclose(y, alone, atol=1e-4)
    path = export_graph(model, tmp_path / "i3d.onnx", ("clip",), {"clip": (3, 8, 32, 32)})
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Conv" in ops and not ops & {"AveragePool", "MaxPool"}  # 2D convs, no pooling over 5-D tensors
    got = ort_session(path).run(None, {"clip": x.numpy()})[0]
    assert np.abs(got - y.numpy()).max() < 1e-3


def test_time_pool_averages_frame_pairs_and_old_configs_load_as_none():
    from train.families.i3d import I3DLite0, TimePool
    from train.families.registry import FAMILIES

    x = torch.randn(2 * 4, 5, 3, 3)  # 2 clips of T = 4
    want = x.reshape(2, 2, 2, 5, 3, 3).mean(dim=2).reshape(4, 5, 3, 3)  # frames (0,1), (2,3) of each clip
    assert torch.allclose(TimePool()(x), want)
    # with no temporal convs, a static clip gives the same logits whatever the pooling
    clip = torch.randn(1, 3, 1, 32, 32).repeat(1, 1, 8, 1, 1)
    torch.manual_seed(0)
    ref = I3DLite0(3, 8, "none", weights=None).eval()
    for tp in ("stem", "stem2"):
        pooled = I3DLite0(3, 8, "none", weights=None, time_pool=tp).eval()
        pooled.load_state_dict(ref.state_dict(), strict=True)  # parameter-free: same state dict keys
        with torch.no_grad():
            assert torch.allclose(pooled(clip), ref(clip), atol=1e-5)
    with pytest.raises(ValueError):
        I3DLite0(3, 6, weights=None, time_pool="stem2")  # T = 6 cannot be halved twice
    with pytest.raises(ValueError):
        I3DLite0(3, 8, weights=None, time_pool="frames")
    old = {k: v for k, v in FAMILIES["i3d"].defaults.items() if k != "time_pool"}  # a config from before the option
    model = FAMILIES["i3d"].build(dict(old, init_weights="none"), 3)
    assert model.time_pool == "none" and model.out_length == 8
    assert FAMILIES["i3d"].defaults["time_pool"] == "none"


def test_convfusion_one_window_is_training_on_a_static_sequence(extraction):
    from stream.core.flow import normalize_rgb, stack_flows
    from train.families.convfusion import ConvFusionNet

    torch.manual_seed(0)
    net = ConvFusionNet(3, flow_length=2).eval()  # ImageNet towers: activations that depend on the input
    index = read_index(extraction)
    frames, flows = load_video(extraction, index["videos"][sorted(index["videos"])[0]])
    rgb = torch.from_numpy(normalize_rgb(frames[[4, 10, 16, 22]], [127.0] * 3, [128.0] * 3))
    fl = torch.from_numpy(np.stack([stack_flows(flows[e - 2:e], "interleaved") for e in (4, 10, 16, 22)]))
    with torch.no_grad():
        net.tfuse.weight.normal_(1.0, 0.3)  # a trained-looking temporal conv, not the identity init
        one = net(rgb[:2], fl[:2])
        net.segments = 3
        static = net(rgb[:2].repeat_interleave(3, 0), fl[:2].repeat_interleave(3, 0))
        moving = net(rgb[[0, 2, 3, 1, 2, 3]], fl[[0, 2, 3, 1, 2, 3]])
    assert torch.allclose(one, static, atol=1e-4)
    assert not torch.allclose(static, moving, atol=1e-3)
    assert torch.allclose(one.exp().sum(1), torch.ones(2), atol=1e-5)  # score fusion: log of averaged softmax


def test_motion_photometric_error_finds_the_true_shift(extraction):
    from train.families.motion import photometric_error, unsupervised_loss

    index = read_index(extraction)
    frames, _ = load_video(extraction, next(iter(index["videos"].values())), flows=False)
    img = torch.from_numpy(frames[5].astype(np.float32).transpose(2, 0, 1))[None] / 128.0
    shifted = torch.roll(img, shifts=2, dims=3)  # content moves 2 px right: first(x) = second(x + 2)
    true = torch.zeros(1, 2, 32, 32)
    true[:, 0] = 2.0
    assert float(photometric_error(img, shifted, true)) < 0.2 * float(photometric_error(img, shifted, true * 0))
    stack = torch.cat([img, shifted], 1)
    good = unsupervised_loss([true / 20.0], stack, 1, 20.0, scale_weights=(1.0,))
    bad = unsupervised_loss([true * 0], stack, 1, 20.0, scale_weights=(1.0,))
    assert float(good) < float(bad)


@pytest.fixture(scope="module")
def spatial_run(extraction, tmp_path_factory):
    out = tmp_path_factory.mktemp("late") / "spatial"
    assert cli(["train", "--stream", "spatial", str(extraction), "--epochs", "1", "--max-steps", "1",
                "--batch-size", "2", "--no-progress", "--out", str(out), *SPLIT]) == 0
    return out


@pytest.mark.parametrize("family,extra", [
    ("i3d", ["--clip-length", "4"]),
    ("i3d", ["--clip-length", "4", "--time-pool", "stem"]),
    ("convfusion", ["--segments", "2"]),
    ("hidden", ["--motion-width", "4", "--motion-epochs", "1", "--segments", "2"]),
    ("r2plus1d", ["--clip-length", "4", "--tiny"]),
])
def test_family_trains_exports_and_evaluates(family, extra, extraction, spatial_run, tmp_path):
    from engines.bundle import read_bundle
    from train.families.export import real_windows, run_onnx, torch_logits
    from train.families.loop import load_family_checkpoint
    from train.families.registry import FAMILIES, input_params
    from train.onnx_export import ort_session

    run, bundle = tmp_path / "run", tmp_path / "bundle"
    assert cli(["family", "train", family, str(extraction), "--out", str(run), "--epochs", "1", "--max-steps", "2",
                "--batch-size", "2", *extra, *SPLIT]) == 0
    log = (run / "log.csv").read_text().splitlines()
    assert len(log) == 2 and log[1].startswith("0,")
    export = ["family", "export", str(run), str(bundle), "--windows", "4"]
    if family == "hidden":
        export += ["--spatial", str(spatial_run)]
    assert cli(export) == 0

    doc = tomllib.loads((bundle / "bundle.toml").read_text())
    assert doc["model"]["format"] == 2 and doc["model"]["family"] == family
    parsed = read_bundle(bundle)  # the runtime's reader accepts it
    assert parsed.format == 2
    net = FAMILIES[family]
    names = [n["name"] for n in doc["networks"]]
    assert net.onnx_name in names
    assert doc["networks"][names.index(net.onnx_name)]["inputs"] == list(net.kinds)
    if family == "hidden":
        assert doc["fusion"]["method"] == "late" and set(doc["fusion"]["weights"]) == {"spatial", "hidden"}
    else:
        assert doc["fusion"] == {"method": "single", "network": net.onnx_name}

    # independent parity: the shipped graph against the checkpoint on real windows of held-out video
    model, meta = load_family_checkpoint(run / "last.pt")
    index = read_index(extraction)
    params = input_params(meta["config"])
    x = real_windows(extraction, index, net.kinds, params, 3, meta["config"]["mean"], meta["config"]["std"],
                     rels=meta["val_videos"])
    got = run_onnx(ort_session(bundle / f"{net.onnx_name}.onnx"), x)
    want = torch_logits(model, x, net.kinds)
    assert got.shape == (3, 2)
    assert float(np.abs(got - want).max()) < 1e-3

    out = tmp_path / "eval.json"
    assert cli(["family", "eval", str(bundle), str(extraction), "--windows", "3", "--json", str(out), *SPLIT]) == 0
    result = json.loads(out.read_text())
    assert result["videos"] == 2 and {r["video"].split("/")[1][:6] for r in result["per_video"]} == {"actor2"}
    assert set(result["accuracy"]) == set(names) | {"fused"}
    assert all(v in (0.0, 0.5, 1.0) for v in result["accuracy"].values())
    assert result["windows"] == 6 and set(result["window_accuracy"]) == set(names) | {"fused"}
    assert all(round(v * 6) == round(v * 6, 3) for v in result["window_accuracy"].values())

    if "--time-pool" in extra:  # recorded in the run and the bundle; the loader and `twostream run` take it
        import subprocess
        import sys

        from engines.loader import open_bundle

        assert meta["config"]["time_pool"] == "stem" and model.out_length == 2
        assert json.loads(doc["provenance"]["config"])["time_pool"] == "stem"
        assert "time pool stem" in doc["model"]["arch"]
        assert list(open_bundle(bundle).engines) == [net.onnx_name]
        from pathlib import Path

        video = Path(index["source"]) / meta["val_videos"][0]  # a real weizmann4 clip (held out)
        proc = subprocess.run([sys.executable, "-m", "stream.cli", "run", "--model", str(bundle), "--pace", "fast",
                               "--print", "--json", "--max-frames", "20", "--stride", "5",
                               "--publish", f"ipc://{tmp_path}/pub", str(video)],
                              capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr[-2000:]
        msgs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        preds = [m for m in msgs if m.get("event") == "prediction"]
        eos = [m for m in msgs if m.get("event") == "eos"]
        assert len(eos) == 1 and preds and len(preds) == eos[0]["windows"], proc.stdout[-2000:]


def test_hidden_export_without_spatial_is_a_clear_error(extraction, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(["family", "train", "hidden", str(extraction), "--out", str(run), "--epochs", "1", "--max-steps", "1",
                "--batch-size", "2", "--motion-width", "4", "--motion-epochs", "0", *SPLIT]) == 0
    assert cli(["family", "export", str(run), str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("twostream family: error:") and "--spatial" in err[-1]


def test_export_parity_failure_is_one_line_naming_the_network(extraction, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(["family", "train", "i3d", str(extraction), "--out", str(run), "--epochs", "1", "--max-steps", "1",
                "--batch-size", "2", "--clip-length", "4", *SPLIT]) == 0
    assert cli(["family", "export", str(run), str(tmp_path / "b"), "--windows", "2", "--tolerance", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("twostream family: error: i3d: ONNX Runtime differs from torch by")
    assert "--tolerance 0" in err[0]
    assert not (tmp_path / "b" / "i3d.onnx").exists()


def test_late_fuse_bundles_builds_a_two_stream_i3d_that_the_runtime_runs(extraction, spatial_run, tmp_path):
    """scripts/late_fuse_bundles.py (how models/zoo/i3d was built): an i3d bundle's network + a late bundle's
    temporal network in one bundle, fused 1 : 1.5, naming both networks' commits; mismatched labels refused."""
    import subprocess
    import sys
    from pathlib import Path

    from engines.bundle import read_bundle
    from engines.loader import open_bundle

    root = Path(__file__).resolve().parents[1]
    run, temporal = tmp_path / "i3d_run", tmp_path / "temporal"
    assert cli(["family", "train", "i3d", str(extraction), "--out", str(run), "--epochs", "1", "--max-steps", "1",
                "--batch-size", "2", "--clip-length", "4", *SPLIT]) == 0
    assert cli(["family", "export", str(run), str(tmp_path / "i3d"), "--windows", "2"]) == 0
    assert cli(["train", "--stream", "temporal", str(extraction), "--epochs", "1", "--max-steps", "1",
                "--batch-size", "2", "--no-progress", "--out", str(temporal), *SPLIT]) == 0
    assert cli(["family", "export-late", str(spatial_run), str(temporal), str(tmp_path / "late"),
                "--windows", "2"]) == 0
    script = [sys.executable, str(root / "scripts" / "late_fuse_bundles.py")]
    out = tmp_path / "fused"
    proc = subprocess.run([*script, str(out), "--family", "i3d_flow", "--net", f"{tmp_path / 'i3d'}:i3d:1.0",
                           "--net", f"{tmp_path / 'late'}:temporal:1.5"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fused = read_bundle(out)
    assert fused.family == "i3d_flow" and [n.name for n in fused.networks] == ["i3d", "temporal"]
    assert fused.fusion.method == "late" and fused.fusion.weights == {"i3d": 1.0, "temporal": 1.5}
    assert [s.kind for s in fused.network("i3d").inputs] == ["clip"] and fused.needs_flow
    assert list(open_bundle(out).engines) == ["i3d", "temporal"]
    prov = tomllib.loads((out / "bundle.toml").read_text())["provenance"]
    assert {"fuse_git_commit", "i3d_train_git_commit", "i3d_export_git_commit",
            "temporal_export_git_commit"} <= set(prov)
    (tmp_path / "late" / "labels.txt").write_text("bend\nwave1\n")  # labels that differ from the i3d bundle's
    proc = subprocess.run([*script, str(tmp_path / "bad"), "--net", f"{tmp_path / 'i3d'}:i3d:1.0",
                           "--net", f"{tmp_path / 'late'}:temporal:1.5"], capture_output=True, text=True, timeout=120)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-2000:]
    assert err[0].startswith("late_fuse_bundles: error: ") and "labels" in err[0]


def test_training_windows_equal_the_runtime_inputs(extraction):
    """train.families.data builds every kind exactly as stream.core.inputs (the runtime's builder) does."""
    from stream.core.inputs import InputSpec, build_inputs, gather_windows, window_needs
    from train.families.data import window_arrays

    index = read_index(extraction)
    frames, flows = load_video(extraction, index["videos"][sorted(index["videos"])[1]])
    specs = [InputSpec("frame"), InputSpec("flow_stack", 4), InputSpec("clip", 3, 2), InputSpec("frame_stack", 5)]
    needs = window_needs(specs)
    ends = [needs.span, needs.span + 3, len(frames) - 1]
    rgb, fl = gather_windows(frames, flows, ends, needs)
    runtime = build_inputs(specs, rgb, fl, mean=[127.0] * 3, std=[128.0] * 3, stacking="interleaved")
    for i, e in enumerate(ends):
        ours = window_arrays(frames, flows, e, ("frame", "flow_stack", "clip", "frame_stack"), mean=[127.0] * 3,
                             std=[128.0] * 3, stacking="interleaved", flow_length=4, clip_length=3, clip_stride=2,
                             stack_length=5)
        for spec, batch in zip(specs, runtime, strict=True):
            assert ours[spec.kind].shape == batch[i].shape
            assert np.array_equal(ours[spec.kind], batch[i]), spec.kind


def test_run_training_videos_never_include_the_validation_videos():
    from stream.core.errors import ConfigError
    from train.families.export import run_training_videos

    index = {"videos": {f"{c}/actor{a}_{c}.mp4": {} for c in ("bend", "jack") for a in (0, 1, 2)}}
    val = ["bend/actor2_bend.mp4", "jack/actor2_jack.mp4"]
    want = sorted(v for v in index["videos"] if v not in val)
    assert run_training_videos({"train_items": want[::-1]}, index) == want
    assert run_training_videos({"val_videos": val, "train_videos": 4}, index) == want  # runs before train_items
    with pytest.raises(ConfigError):  # the recorded count does not match: refuse rather than guess
        run_training_videos({"val_videos": val, "train_videos": 3}, index)
    with pytest.raises(ConfigError):
        run_training_videos({"val_videos": val}, index)


def test_int8_exports_calibrate_on_training_videos_only(extraction, spatial_run, tmp_path, monkeypatch):
    """family export and export-late draw every parity/calibration/agreement window from training videos."""
    import train.families.export as fexport

    calls = []
    real = fexport.real_windows

    def spy(*args, rels=None, **kwargs):
        calls.append(rels)
        return real(*args, rels=rels, **kwargs)

    monkeypatch.setattr(fexport, "real_windows", spy)
    run = tmp_path / "run"
    assert cli(["family", "train", "i3d", str(extraction), "--out", str(run), "--epochs", "1", "--max-steps", "1",
                "--batch-size", "2", "--clip-length", "4", *SPLIT]) == 0
    assert cli(["family", "export", str(run), str(tmp_path / "b"), "--windows", "4", "--quantize", "int8",
                "--min-agreement", "0"]) == 0
    temporal = tmp_path / "temporal"
    assert cli(["train", "--stream", "temporal", str(extraction), "--epochs", "1", "--max-steps", "1",
                "--batch-size", "2", "--no-progress", "--out", str(temporal), *SPLIT]) == 0
    assert cli(["family", "export-late", str(spatial_run), str(temporal), str(tmp_path / "late"), "--windows", "4",
                "--quantize", "int8", "--min-agreement", "0"]) == 0
    train = {f"{c}/actor{a}_{c}.mp4" for c in ("bend", "jack") for a in (0, 1)}
    assert calls and all(rels is not None and set(rels) <= train and rels for rels in calls)
    doc = tomllib.loads((tmp_path / "b" / "bundle.toml").read_text())
    assert doc["provenance"]["calibration"].startswith("4 training videos")


def test_hidden_int8_keeps_motionnet_and_the_first_temporal_layers_fp32(extraction, spatial_run, tmp_path):
    """hidden's int8 graph quantizes the temporal Lite0 from block 2 on; MotionNet and the layers that read its
    flow stay fp32 (all-int8 top-1 agreement measured 0.44 on the zoo checkpoint)."""
    import onnx

    run, bundle = tmp_path / "run", tmp_path / "bundle"
    assert cli(["family", "train", "hidden", str(extraction), "--out", str(run), "--epochs", "1", "--max-steps", "1",
                "--batch-size", "2", "--motion-width", "4", "--motion-epochs", "0", *SPLIT]) == 0
    assert cli(["family", "export", str(run), str(bundle), "--spatial", str(spatial_run), "--windows", "4",
                "--quantize", "int8", "--min-agreement", "0"]) == 0
    graph = onnx.load(str(bundle / "hidden.onnx")).graph
    made_by = {o: n.op_type for n in graph.node for o in n.output}

    def weights_quantized(part: str) -> set[bool]:
        convs = [n for n in graph.node if n.op_type == "Conv"
                 and any(p.key == "namespace" and part in p.value for p in n.metadata_props)]
        assert convs, part
        return {made_by.get(n.input[1]) == "DequantizeLinear" for n in convs}

    assert weights_quantized("HiddenTemporal/motion: ") == {False}
    assert weights_quantized("/temporal._blocks.0: ") == {False}
    assert weights_quantized("/temporal._blocks.5: ") == {True}
    report = json.loads(tomllib.loads((bundle / "bundle.toml").read_text())["provenance"]["networks"])
    hidden = next(r for r in report if r["name"] == "hidden")
    assert hidden["precision"] == "int8" and hidden["int8_from"] == "temporal._blocks.2"


def test_streams_report_pools_clean_and_handheld_streams_with_the_runtime_metrics(tmp_path):
    from train.families.streams_report import score, summary

    labels = ["bend", "jack"]
    ann = {"fps": 25.0, "frames": 100, "segments": [{"label": "bend", "start": 0, "end": 50},
                                                      {"label": "jack", "start": 50, "end": 100}]}
    report = {"labels": labels, "videos": [], "windows": {}}
    for name, wrong in (("s_actor0.mp4", 0), ("s_actor0_handheld.mp4", 2)):
        (tmp_path / name).with_suffix(".json").write_text(json.dumps(ann))
        video = str(tmp_path / name)
        report["videos"].append({"video": video, "annotation": str((tmp_path / name).with_suffix(".json"))})
        rows = []
        for i, frame in enumerate(range(10, 100, 10)):  # 9 windows; the handheld one gets its last two wrong
            truth = "bend" if frame < 50 else "jack"
            label = truth if i < 9 - wrong else ("bend" if truth == "jack" else "jack")
            p = {lab: (0.9 if lab == label else 0.1) for lab in labels}
            rows.append({"frame": frame, "label": label, "score": 0.9, "fused": p,
                         "streams": {"i3d": [truth, 0.8], "temporal": [label, 0.7]}})
        report["windows"][video] = rows
    out = summary(score(report))
    assert set(out) == {"clean", "handheld"}
    assert out["clean"]["policies"]["none"]["window_accuracy"] == 1.0
    assert out["handheld"]["policies"]["none"]["window_accuracy"] == 7 / 9
    assert out["handheld"]["network_window_accuracy"] == {"i3d": 1.0, "temporal": 7 / 9}
    assert "ema(alpha=0.5)" in out["clean"]["policies"]
    clean = out["clean"]["policies"]["none"]
    assert clean["switches"] == 1 and clean["missed_switches"] == 0
