"""Bundle format 2 end to end: one tiny real torch network per input kind, exported to ONNX, run live.

Each family layout (frame only; frame + flow late fusion; one conv-fusion graph with two inputs;
clip T=4 at stride 2; frame_stack L=3 late-fused with a frame network) is written with the one
bundle writer and run through the real pipeline (`python -m stream.cli run --pace fast --print
--json`) on a real weizmann4 clip. The test checks the window count against the documented formula
(frames counted by OpenCV) and every published per-network score and the fused score against torch
run on inputs this file computes itself from OpenCV decodes (no stream.core.inputs code).
Malformed bundles must give their one-line error through the CLI, and models/default still runs.
"""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT, count_frames

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

S = 32
LABELS = ["bend", "jack", "wave1", "wave2"]
L_FLOW = 3
T_CLIP, CLIP_STRIDE = 4, 2
L_STACK = 3
MEAN, STD = (127.0, 120.0, 110.0), (128.0, 100.0, 90.0)
BOUND = 20.0
MAX_FRAMES = 40
STRIDE = 3


# --- tiny real networks ----------------------------------------------------------------------------
def _head(width: int) -> nn.Module:
    lin = nn.Linear(width, len(LABELS))
    with torch.no_grad():
        lin.weight.mul_(8.0)  # peaked softmaxes: top-1 labels are never near-ties
    return lin


class Conv2dNet(nn.Module):
    def __init__(self, channels: int, width: int = 8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = _head(width)

    def forward(self, x):
        return self.head(self.body(x))


class ConvFusionNet(nn.Module):
    """Two towers fused at the last conv layer (concat + 1x1 conv), then pooled: one graph, two inputs."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.rgb = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU())
        self.flow = nn.Sequential(nn.Conv2d(2 * L_FLOW, width, 3, stride=2, padding=1), nn.ReLU())
        self.fuse = nn.Sequential(nn.Conv2d(2 * width, width, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = _head(width)

    def forward(self, frame, flow):
        return self.head(self.fuse(torch.cat([self.rgb(frame), self.flow(flow)], dim=1)))


class ClipNet(nn.Module):
    def __init__(self, width: int = 8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv3d(3, width, 3, stride=(1, 2, 2), padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool3d(1), nn.Flatten())
        self.head = _head(width)

    def forward(self, x):
        return self.head(self.body(x))


def _export(model: nn.Module, path: Path, shapes: list[tuple[int, ...]]) -> None:
    """TorchScript exporter with a dynamic batch: ~0.5 s a network here, the dynamo exporter ~5-10 s (measured),
    and these tests only need real ONNX graphs of real torch modules."""
    examples = tuple(torch.zeros((2, *s)) for s in shapes)
    names = [f"input{i}" for i in range(len(shapes))]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), examples, str(path), dynamo=False, input_names=names, output_names=["logits"],
                          dynamic_axes={**{n: {0: "batch"} for n in names}, "logits": {0: "batch"}}, opset_version=17)


FRAME, FLOW = (3, S, S), (2 * L_FLOW, S, S)
CLIP, STACK = (3, T_CLIP, S, S), (3 * (L_STACK + 1), S, S)

# name -> (family, [(network name, inputs, extra keys, model factory, shapes)], fusion)
LAYOUTS = {
    "frame_only": ("late", [("rgb", ["frame"], {}, lambda: Conv2dNet(3), [FRAME])], None),
    "late": ("late", [("spatial", ["frame"], {}, lambda: Conv2dNet(3), [FRAME]),
                      ("temporal", ["flow_stack"], {}, lambda: Conv2dNet(2 * L_FLOW), [FLOW])],
             {"method": "late", "weights": {"spatial": 1.0, "temporal": 1.5}}),
    "convfusion": ("convfusion", [("fusion", ["frame", "flow_stack"], {}, ConvFusionNet, [FRAME, FLOW])],
                   {"method": "single", "network": "fusion"}),
    "clip": ("i3d", [("i3d", ["clip"], {"clip_length": T_CLIP, "clip_stride": CLIP_STRIDE}, ClipNet, [CLIP])], None),
    "hidden": ("hidden", [("spatial", ["frame"], {}, lambda: Conv2dNet(3), [FRAME]),
                          ("motion", ["frame_stack"], {"stack_length": L_STACK},
                           lambda: Conv2dNet(3 * (L_STACK + 1)), [STACK])],
               {"method": "late", "weights": {"spatial": 1.0, "motion": 2.0}}),
}
SPAN = {"frame_only": 0, "late": L_FLOW, "convfusion": L_FLOW, "clip": (T_CLIP - 1) * CLIP_STRIDE, "hidden": L_STACK}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """{layout: (bundle dir, {network: torch module})}: real exports through the one bundle writer."""
    from engines.bundle import write_bundle_toml
    from stream.core.flow import FlowSettings

    root = tmp_path_factory.mktemp("v2")
    out = {}
    for seed, (layout, (family, nets, fusion)) in enumerate(LAYOUTS.items()):
        d = root / layout
        d.mkdir()
        (d / "labels.txt").write_text("\n".join(LABELS) + "\n")
        modules, tables = {}, []
        for k, (name, inputs, extra, factory, shapes) in enumerate(nets):
            torch.manual_seed(100 * seed + k)
            model = factory().eval()
            _export(model, d / f"{name}.onnx", shapes)
            modules[name] = model
            tables.append({"name": name, "file": f"{name}.onnx", "inputs": inputs, **extra})
        uses_flow = any("flow_stack" in t["inputs"] for t in tables)
        write_bundle_toml(d, input_size=S, mean=MEAN, std=STD, networks=tables, family=family, fusion=fusion,
                          flow=FlowSettings(bound=BOUND) if uses_flow else None,
                          flow_length=L_FLOW if uses_flow else 0, arch="tiny test nets",
                          provenance={"note": "tests/test_bundle_v2.py"})
        out[layout] = (d, modules)
    return out


@pytest.fixture(scope="module")
def clip(shared_data) -> Path:
    return shared_data / "weizmann4" / "jack" / "actor1_jack.mp4"


# --- independent reference inputs --------------------------------------------------------------
def _decode(path: Path, max_frames: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < max_frames:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(cv2.resize(bgr, (S, S), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
    cap.release()
    return np.stack(frames)


def _flows(frames: np.ndarray) -> np.ndarray:
    """q[i] = quantised DIS flow from frame i to frame i+1, (N-1, S, S, 2) uint8."""
    cv2.setNumThreads(1)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    out = []
    for a, b in zip(gray[:-1], gray[1:], strict=True):
        f = dis.calc(a, b, None)
        out.append(np.rint((np.clip(f, -BOUND, BOUND) + BOUND) * (255.0 / (2 * BOUND))).astype(np.uint8))
    return np.stack(out)


def _norm(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, H, W) float32."""
    return ((rgb.astype(np.float32) - np.float32(MEAN)) / np.float32(STD)).transpose(2, 0, 1)


def _reference_input(kind: str, frames: np.ndarray, q: np.ndarray, e: int) -> np.ndarray:
    if kind == "frame":
        return _norm(frames[e])
    if kind == "flow_stack":  # interleaved: x1, y1, x2, y2, ... of the L flows ending at frame e, oldest first
        chans = []
        for i in range(e - L_FLOW, e):
            chans += [q[i][..., 0], q[i][..., 1]]
        return (np.stack(chans).astype(np.float32) - 127.5) / 127.5
    if kind == "clip":
        return np.stack([_norm(frames[e - (T_CLIP - 1 - k) * CLIP_STRIDE]) for k in range(T_CLIP)], axis=1)
    return np.concatenate([_norm(frames[i]) for i in range(e - L_STACK, e + 1)], axis=0)  # frame_stack


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return z / z.sum()


def _run_cli(args: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def _run_pipeline(bundle: Path, video: Path, tmp_path: Path, *, max_frames: int = MAX_FRAMES,
                  stride: int = STRIDE) -> tuple[list[dict], dict]:
    proc = _run_cli(["run", "--model", str(bundle), "--pace", "fast", "--print", "--json", "--max-frames",
                     str(max_frames), "--stride", str(stride), "--publish", f"ipc://{tmp_path}/pub", str(video)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    msgs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    preds = [m for m in msgs if m.get("event") == "prediction"]
    eos = [m for m in msgs if m.get("event") == "eos"]
    assert len(eos) == 1, proc.stdout[-2000:]
    return preds, eos[0]


# --- end to end per layout --------------------------------------------------------------------------
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_pipeline_runs_every_layout_and_matches_torch(layout, bundles, clip, tmp_path):
    bundle, modules = bundles[layout]
    family, nets, fusion = LAYOUTS[layout]
    preds, eos = _run_pipeline(bundle, clip, tmp_path)

    frames_total = min(MAX_FRAMES, count_frames(clip))
    span = SPAN[layout]
    expected_count = 0 if frames_total <= span else (frames_total - 1 - span) // STRIDE + 1
    assert len(preds) == expected_count == eos["windows"]
    assert [p["frame"] for p in preds] == [span + k * STRIDE for k in range(expected_count)]
    assert [p["first_frame"] for p in preds] == [span + k * STRIDE - span for k in range(expected_count)]

    frames = _decode(clip, MAX_FRAMES)
    q = _flows(frames) if layout in ("late", "convfusion") else None
    names = [n[0] for n in nets]
    for p in preds:
        assert sorted(p["streams"]) == sorted(names)
        e = p["frame"]
        probs = {}
        for name, inputs, _extra, _factory, _shapes in nets:
            xs = [torch.from_numpy(_reference_input(kind, frames, q, e)[None]) for kind in inputs]
            with torch.no_grad():
                probs[name] = _softmax(modules[name](*xs).numpy()[0].astype(np.float64))
            got = p["streams"][name]
            assert got["label"] == LABELS[int(np.argmax(probs[name]))], (name, e)
            assert abs(got["score"] - probs[name].max()) < 2e-4, (name, e, got, probs[name])
        if fusion is None or fusion["method"] == "single":
            fused = probs[names[0] if fusion is None else fusion["network"]]
        else:
            w = fusion["weights"]
            fused = sum(w[n] * probs[n] for n in names) / sum(w.values())
        assert p["fused"]["label"] == LABELS[int(np.argmax(fused))]
        assert abs(p["fused"]["score"] - fused.max()) < 2e-4


def test_old_default_bundle_still_loads_and_runs(clip, tmp_path):
    """models/default (format 1, no family) keeps its two streams, names and window arithmetic."""
    from engines.bundle import read_bundle

    b = read_bundle(ROOT / "models" / "default")
    assert b.format == 1 and b.family == "late" and [n.name for n in b.networks] == ["spatial", "temporal"]
    assert [s.kind for s in b.networks[1].inputs] == ["flow_stack"] and b.span == b.flow_length == 10
    assert b.fusion.weights == {"spatial": 1.0, "temporal": 1.5}
    preds, eos = _run_pipeline(ROOT / "models" / "default", clip, tmp_path, max_frames=30, stride=5)
    frames_total = min(30, count_frames(clip))
    assert len(preds) == (frames_total - 1 - 10) // 5 + 1 == eos["windows"]
    assert all(set(p["streams"]) == {"spatial", "temporal"} for p in preds)
    assert preds[0]["frame"] == 10 and preds[0]["first_frame"] == 0


def test_offline_window_inputs_and_engines_match_torch(bundles, clip):
    """eval/calibration path: stream.core.offline builds the same inputs, the engines give torch's logits."""
    from engines.loader import open_bundle
    from stream.core.offline import bundle_window_inputs, read_video, video_flows_if_needed

    for layout in ("convfusion", "clip", "hidden"):
        bundle_dir, modules = bundles[layout]
        loaded = open_bundle(bundle_dir, kind="onnxruntime")
        frames = read_video(clip, S, max_frames=MAX_FRAMES)
        flows = video_flows_if_needed(loaded.bundle, frames)
        assert (flows is None) == (layout != "convfusion")
        ends = [SPAN[layout], SPAN[layout] + 5, len(frames) - 1]
        inputs = bundle_window_inputs(loaded.bundle, frames, flows, ends)
        ref_frames, ref_q = _decode(clip, MAX_FRAMES), (_flows(frames) if flows is not None else None)
        for name, _inputs, _extra, _factory, _shapes in LAYOUTS[layout][1]:
            kinds = _inputs
            for x, kind in zip(inputs[name], kinds, strict=True):
                want = np.stack([_reference_input(kind, ref_frames, ref_q, e) for e in ends])
                assert x.shape == want.shape and np.abs(x - want).max() < 1e-6, (layout, name, kind)
            with torch.no_grad():
                expect = modules[name](*[torch.from_numpy(x) for x in inputs[name]]).numpy()
            assert np.abs(loaded.engines[name].run(*inputs[name]) - expect).max() < 1e-4


# --- malformed bundles: one line through the CLI ------------------------------------------------------
def _variant(src: Path, dst: Path, edit) -> Path:
    import shutil

    shutil.copytree(src, dst)
    toml = dst / "bundle.toml"
    toml.write_text(edit(toml.read_text()))
    return dst


MALFORMED = [
    ("hidden",
     lambda t: t.replace('inputs = ["frame_stack"]', 'inputs = ["optical"]').replace("stack_length = 3\n", ""),
     "unknown input kind 'optical'"),
    ("clip", lambda t: t.replace("clip_length = 4", "clip_length = 40"), "flow_ring = 64 must be >= 2 x 79"),
    ("hidden", lambda t: t.replace("stack_length = 3", "stack_length = 40"), "flow_ring = 64 must be >= 2 x 41"),
    ("convfusion", lambda t: t.replace('inputs = ["frame", "flow_stack"]', 'inputs = ["frame"]'),
     "has 2 input(s) but bundle.toml declares 1"),
    ("late", lambda t: t.replace("length = 3", "length = 4"), "flow_stack(L=4) with flow.length = 4"),
    ("clip", lambda t: t.replace("clip_length = 4", "clip_length = 5"), "clip(T=5, stride=2)"),
    ("frame_only", lambda t: t.replace("input_size = 32", "input_size = 48"), "needs (3, 48, 48)"),
    ("late", lambda t: t.replace("temporal = 1.5", "tempral = 1.5"), "weights names unknown network 'tempral'"),
    ("hidden", lambda t: t.replace(", motion = 2.0", ""), "has no weight for network 'motion'"),
    ("convfusion", lambda t: t.replace('network = "fusion"', 'network = "fused"'),
     "network = 'fused' is not a network"),
]


def test_malformed_bundles_fail_with_one_line(bundles, clip, tmp_path):
    procs = []
    for i, (layout, edit, needle) in enumerate(MALFORMED):
        bad = _variant(bundles[layout][0], tmp_path / f"bad{i}", edit)
        cmd = [sys.executable, "-m", "stream.cli", "run", "--model", str(bad), "--pace", "fast", "--max-frames", "20",
               "--publish", f"ipc://{tmp_path}/p{i}", str(clip)]
        procs.append((needle, subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                               text=True)))
    for needle, proc in procs:
        out, err = proc.communicate(timeout=120)
        lines = [line for line in err.splitlines() if line.strip()]
        assert proc.returncode == 2, (needle, err[-1500:])
        assert len(lines) == 1 and "Traceback" not in err, err[-1500:]
        assert needle in lines[0], (needle, lines[0])


def test_writer_round_trip_and_format1_unchanged(bundles, tmp_path):
    """The one writer: format 2 reads back to the same networks/fusion; without networks it writes format 1."""
    from engines.bundle import read_bundle, write_bundle_toml
    from stream.core.flow import FlowSettings

    b = read_bundle(bundles["hidden"][0])
    assert b.format == 2 and b.family == "hidden" and not b.needs_flow
    assert [(n.name, [(s.kind, s.length) for s in n.inputs]) for n in b.networks] == \
        [("spatial", [("frame", 1)]), ("motion", [("frame_stack", L_STACK)])]
    assert b.fusion.method == "late" and b.fusion.weights == {"spatial": 1.0, "motion": 2.0}
    assert b.needs.frames == L_STACK + 1 and b.needs.flows == 0 and b.span == L_STACK
    c = read_bundle(bundles["clip"][0])
    assert c.fusion.method == "single" and c.fusion.network == "i3d" and c.span == (T_CLIP - 1) * CLIP_STRIDE
    d = tmp_path / "f1"
    d.mkdir()
    write_bundle_toml(d, input_size=32, mean=(127,) * 3, std=(128,) * 3, flow=FlowSettings(), flow_length=4,
                      fusion_weights={"spatial": 1.0, "temporal": 1.5}, arch="t", provenance={})
    text = (d / "bundle.toml").read_text()
    assert "format" not in text and 'spatial = "spatial.onnx"' in text and "[[networks]]" not in text


def test_eval_scores_any_family_like_torch(bundles, shared_data, tmp_path):
    """`twostream eval` on a hidden-family bundle (frame + frame_stack, no flow): per-network and fused video
    predictions equal torch on independently built inputs averaged over the same evenly spaced windows."""
    data = tmp_path / "data"
    videos = {"bend": "actor0_bend.mp4", "wave2": "actor3_wave2.mp4"}
    for label, name in videos.items():
        (data / label).mkdir(parents=True)
        (data / label / name).symlink_to(shared_data / "weizmann4" / label / name)
    bundle, modules = bundles["hidden"]
    out = tmp_path / "eval.json"
    proc = _run_cli(["eval", str(data), "--model", str(bundle), "--windows", "3", "--max-frames", "30",
                     "--threads", "1", "--json", str(out), "--confusion", str(tmp_path / "c.png")])
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["family"] == "hidden" and result["networks"] == ["spatial", "motion"]
    rows = {r["video"]: r for r in result["per_video"]}
    for label, name in videos.items():
        frames = _decode(data / label / name, 30)
        ends = sorted({int(round(x)) for x in np.linspace(L_STACK, len(frames) - 1, 3)})
        mean = {}
        for net, kind in (("spatial", "frame"), ("motion", "frame_stack")):
            x = torch.from_numpy(np.stack([_reference_input(kind, frames, None, e) for e in ends]))
            with torch.no_grad():
                mean[net] = np.mean([_softmax(v) for v in modules[net](x).numpy().astype(np.float64)], axis=0)
        fused = (1.0 * mean["spatial"] + 2.0 * mean["motion"]) / 3.0
        row = rows[f"{label}/{name}"]
        assert row["windows"] == len(ends)
        assert row["spatial"] == LABELS[int(np.argmax(mean["spatial"]))]
        assert row["motion"] == LABELS[int(np.argmax(mean["motion"]))]
        assert row["fused"] == LABELS[int(np.argmax(fused))]


@pytest.mark.parametrize("span,stride", [(0, 1), (0, 5), (3, 2), (6, 5), (10, 5)])
def test_window_clock_counts_frames_for_any_span(span, stride):
    """add_frame closes windows at frames span, span+stride, ... (the README formula); for span = L it closes
    the same windows as the flow-counting add_flow did."""
    from stream.core.windows import WindowClock

    frames = 37
    clock = WindowClock(span, stride)
    closed = [f for f in range(frames) if clock.add_frame()]
    expected = 0 if frames <= span else (frames - 1 - span) // stride + 1
    assert closed == [span + k * stride for k in range(expected)]
    if span:
        old = WindowClock(span, stride)
        assert closed == [f for f in range(1, frames) if old.add_flow()]


def test_print_lists_every_network(bundles, clip, tmp_path):
    """`run --print` (text) names each network of the bundle; two-stream keeps its 'spatial .. | temporal ..'."""
    import re

    for layout, names in (("hidden", ["spatial", "motion"]), ("late", ["spatial", "temporal"])):
        proc = _run_cli(["run", "--model", str(bundles[layout][0]), "--pace", "fast", "--print", "--max-frames", "12",
                         "--publish", f"ipc://{tmp_path}/t{layout}", str(clip)])
        assert proc.returncode == 0, proc.stderr[-1500:]
        lines = [line for line in proc.stdout.splitlines() if "#" in line]
        label = "|".join(LABELS)
        pattern = r" \| ".join(rf"{n} ({label}) \d\.\d\d" for n in names)
        assert lines and all(re.search(pattern, line) for line in lines), proc.stdout[-1500:]


def test_eval_stream_reports_each_network_of_any_family(bundles, clip, tmp_path):
    """`twostream eval-stream` on a hidden-family bundle: its windows carry the networks by name (spatial, motion),
    and their labels equal the ones `run --print --json` publishes for the same video."""
    video = tmp_path / "v.mp4"
    video.symlink_to(clip)
    frames = count_frames(clip)
    (tmp_path / "v.json").write_text(json.dumps({"fps": 25, "frames": frames,
                                                 "segments": [{"label": "jack", "start": 0, "end": frames}]}))
    out = tmp_path / "q.json"
    proc = _run_cli(["eval-stream", str(video), "--model", str(bundles["hidden"][0]), "--json", str(out),
                     "--plot", str(tmp_path / "t.png")], timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    windows = json.loads(out.read_text())["windows"][str(video)]
    assert windows and all(set(w["streams"]) == {"spatial", "motion"} and "temporal" not in w for w in windows)
    assert (tmp_path / "t.png").stat().st_size > 0
    preds, _ = _run_pipeline(bundles["hidden"][0], clip, tmp_path, max_frames=frames, stride=5)
    by_frame = {p["frame"]: p for p in preds}
    for w in windows:
        p = by_frame[w["frame"]]
        assert [w["streams"][n][0] for n in ("spatial", "motion")] == [p["streams"][n]["label"]
                                                                       for n in ("spatial", "motion")]


def test_tensorrt_plan_inputs_for_any_family(bundles, clip):
    """build-engines' CPU side for format 2: every network is planned, shapes come from the declaration (a tuple per
    input for a multi-input graph), INT8 calibration batches of a clip network are the runtime's clip inputs, and a
    multi-input network refuses INT8 calibration in one line."""
    from engines.bundle import read_bundle
    from engines.calibration import calibration_batches
    from engines.plans import bundle_networks, input_shape, onnx_file
    from stream.core.errors import BundleError

    conv = read_bundle(bundles["convfusion"][0])
    assert bundle_networks(conv) == ("fusion",) and onnx_file(conv, "fusion").name == "fusion.onnx"
    assert input_shape(conv, "fusion") == (FRAME, FLOW)
    with pytest.raises(BundleError, match="several inputs"):
        next(calibration_batches([clip], conv, "fusion", batch_size=2))
    i3d = read_bundle(bundles["clip"][0])
    assert input_shape(i3d, "i3d") == CLIP
    [batch] = list(calibration_batches([clip], i3d, "i3d", batch_size=4, windows_per_video=4, max_frames=MAX_FRAMES))
    frames = _decode(clip, MAX_FRAMES)
    ends = sorted({int(round(x)) for x in np.linspace(SPAN["clip"], len(frames) - 1, 4)})
    want = np.stack([_reference_input("clip", frames, None, e) for e in ends])
    assert batch.shape == (4, *CLIP) and np.abs(batch - want).max() < 1e-6
