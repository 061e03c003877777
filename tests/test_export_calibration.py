"""int8 calibration never sees held-out videos (issue 12, point 6).

`twostream export --quantize int8` draws calibration windows from the checkpoints' own training
videos: the list recorded in the checkpoint, or for older checkpoints the split re-made from the
recorded command (refused when it does not reproduce the recorded split). Real parts: a real
weizmann4 extraction and real (one-step) training runs of both streams.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from stream.cli import main as cli  # noqa: E402
from stream.core.errors import ConfigError  # noqa: E402
from train.extract import extract_dataset, load_video, read_index  # noqa: E402

ACTORS = (0, 1, 2)
VAL = "2"


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory):
    """bend vs jack of actors 0-2 (48 px, 30 frames); spatial + temporal checkpoints with actor 2 held out."""
    src = tmp_path_factory.mktemp("w4cal")
    for cls in ("bend", "jack"):
        (src / cls).mkdir()
        for a in ACTORS:
            f = next((shared_data / "weizmann4" / cls).glob(f"*actor{a}*"))
            shutil.copy(f, src / cls / f.name)
    ext = tmp_path_factory.mktemp("w4cal_ext")
    extract_dataset(src, ext, size=48, max_frames=30, workers=1, progress=False)
    runs = tmp_path_factory.mktemp("w4cal_runs")
    for stream in ("spatial", "temporal"):
        assert cli(["train", "--stream", stream, str(ext), "--out", str(runs / stream), "--epochs", "1",
                    "--batch-size", "2", "--segments", "1", "--flow-length", "4", "--max-steps", "1",
                    "--no-progress", "--weights", "none", "--split", "group", "--group-regex", r"actor(\d+)",
                    "--val-groups", VAL]) == 0
    return ext, runs


def _meta(runs, stream):
    from train.engine import load_checkpoint

    return load_checkpoint(runs / stream / "last.pt")["meta"]


def _train_rels(ext):
    return sorted(rel for rel in read_index(ext)["videos"] if f"actor{VAL}" not in rel)


def test_checkpoint_records_its_training_videos_and_export_uses_only_them(trained):
    from train.cmd_export import calibration_videos, training_videos

    ext, runs = trained
    index = read_index(ext)
    ms = _meta(runs, "spatial")
    assert ms["train_items"] == _train_rels(ext) and len(ms["train_items"]) == 4
    assert training_videos(ms, index) == _train_rels(ext)
    videos, note = calibration_videos(ext, [ms, _meta(runs, "temporal")])
    assert videos == _train_rels(ext) and "4 training videos" in note
    assert not any(f"actor{VAL}" in v for v in videos)


def test_older_checkpoints_are_resplit_from_their_command_or_refused(trained):
    from train.cmd_export import training_videos

    ext, runs = trained
    index = read_index(ext)
    legacy = {k: v for k, v in _meta(runs, "temporal").items() if k != "train_items"}
    # the command as `twostream train` records it when run from a shell (pytest's argv is in the real one)
    legacy["command"] = ("twostream train --stream temporal " + str(ext) + " --epochs 1 --split group "
                         + " --group-regex 'actor(\\d+)' --val-groups " + VAL)
    assert training_videos(legacy, index) == _train_rels(ext)
    # a command that does not reproduce the recorded split (other validation actor): refused, not guessed
    wrong = dict(legacy, command=legacy["command"].replace(f"--val-groups {VAL}", "--val-groups 1"))
    assert wrong["command"] != legacy["command"]
    with pytest.raises(ConfigError, match="cannot tell which videos"):
        training_videos(wrong, index)
    with pytest.raises(ConfigError, match="cannot tell which videos"):
        training_videos(dict(legacy, command="twostream train"), index)


def test_calibration_windows_come_only_from_training_videos(trained):
    from train.cmd_export import calibration_videos, real_windows

    ext, runs = trained
    index = read_index(ext)
    ms = _meta(runs, "spatial")
    videos, _ = calibration_videos(ext, [ms])
    spatial, temporal = real_windows(ext, ms, 24, seed=1, videos=videos)
    assert len(spatial) == len(temporal) == 24

    def frames_of(rel):
        frames, _ = load_video(ext, index["videos"][rel])
        return (frames.astype(np.float32) - 127.0) / 128.0  # the checkpoint's mean/std, in pixel units

    train_frames = np.concatenate([frames_of(r) for r in videos]).transpose(0, 3, 1, 2)
    val_frames = np.concatenate([frames_of(r) for r in index["videos"] if r not in videos]).transpose(0, 3, 1, 2)
    for window in spatial:  # each calibration frame is a frame of a training video, none of a held-out one
        assert np.any(np.all(np.isclose(train_frames, window, atol=1e-6), axis=(1, 2, 3)))
        assert not np.any(np.all(np.isclose(val_frames, window, atol=1e-6), axis=(1, 2, 3)))


def test_export_main_calibrates_on_training_videos(trained, monkeypatch):
    """The export command itself passes the training videos to the calibration draw (the ONNX export and the
    quantizer are replaced by stand-ins here: their own tests are in test_train_training.py)."""
    import train.cmd_export as cmd_export
    import train.onnx_export
    import train.quantize

    ext, runs = trained
    calls = []
    real = cmd_export.real_windows

    def recording(extracted, meta, count, seed=0, videos=None):
        calls.append(None if videos is None else sorted(videos))
        return real(extracted, meta, count, seed=seed, videos=videos)

    class Stop(Exception):
        pass

    def stop(fp32, out, calib):
        raise Stop(calib.shape)

    monkeypatch.setattr(cmd_export, "real_windows", recording)
    monkeypatch.setattr(train.onnx_export, "export_bundle", lambda out, **kw: {"spatial": 0.0, "temporal": 0.0})
    monkeypatch.setattr(train.quantize, "quantize_int8", stop)
    parser = __import__("argparse").ArgumentParser()
    cmd_export.configure(parser)
    args = parser.parse_args([str(runs / "spatial"), str(runs / "temporal"), str(runs / "bundle"),
                              "--quantize", "int8", "--calibration-windows", "8"])
    with pytest.raises(Stop):
        cmd_export.main(args)
    assert calls[-1] == _train_rels(ext)  # the calibration draw (the parity check before it may use any video)
