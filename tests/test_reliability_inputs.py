"""Bad input is refused with ONE line naming the culprit and a non-zero exit, never a traceback; the
message decoder and the bundle reader, fuzzed, raise only their own error types.

The CLI cases run `python -m stream.cli run` as a real subprocess against a real tiny bundle.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rtsp_fixtures import *  # noqa: F403
from rtsp_fixtures import ROOT, free_port

from engines.bundle import read_bundle
from stream.clients.client import MessageError, decode_message
from stream.core.errors import BundleError
from stream.core.toml_writer import toml_value


def _bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def _edit_toml(bundle: Path, old: str, new: str) -> None:
    path = bundle / "bundle.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def _video(tmp_path: Path) -> Path:
    """A real small video (OpenCV-written MJPG AVI), so the failure is never the source's fault."""
    import cv2

    path = tmp_path / "ok.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(12):
        writer.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    writer.release()
    return path


# (case id, how to set it up -> (extra args, config text or None), text the one-line message must contain)
def _case_unknown_key(t, b):
    return [], "[pipeline]\nstrid = 5\n", "strid"


def _case_unknown_section(t, b):
    return [], "[pipline]\nstride = 5\n", "pipline"


def _case_out_of_range(t, b):
    return [], "[pipeline]\nstride = 0\n", "stride = 0"


def _case_wrong_type(t, b):
    return [], '[capture]\nstall_seconds = "soon"\n', "stall_seconds"


def _case_bad_toml(t, b):
    return [], "[pipeline\nstride = 5\n", "not valid TOML"


def _case_missing_config(t, b):
    return ["--config", str(t / "nope.toml")], None, "nope.toml"


def _case_config_not_regular(t, b):  # /dev/null exists: the message must not say it does not
    return ["--config", "/dev/null"], None, "config file '/dev/null' is not a regular file"


def _case_config_directory(t, b):
    return ["--config", str(t)], None, f"config file {str(t)!r} is a directory, not a regular file"


def _case_flag_range(t, b):
    return ["--max-frames", "-3"], None, "--max-frames"


def _case_bad_endpoint(t, b):
    return ["--publish", "tcp://127.0.0.1:99999"], None, "99999"


def _case_bad_scheme(t, b):
    return ["SRC=ftp://user:hunter2@10.0.0.5/cam"], None, "'ftp'"


def _case_bad_source_name(t, b):
    return ["SRC=bad name=x.mp4"], None, "source name 'bad name'"


def _case_missing_file(t, b):
    return ["SRC=" + str(t / "missing.mp4")], None, "missing.mp4: no such file"


def _case_random_bytes(t, b):
    path = t / "random.mp4"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    return ["SRC=" + str(path)], None, "random.mp4: not a readable video"


def _case_empty_file(t, b):
    (t / "empty.avi").write_bytes(b"")
    return ["SRC=" + str(t / "empty.avi")], None, "empty.avi"


def _case_no_model_dir(t, b):
    return ["--model", str(t / "no_such_bundle")], None, "no_such_bundle"


def _case_label_count(t, b):
    (b / "labels.txt").write_text((b / "labels.txt").read_text() + "extra_label\n")
    return [], None, "labels.txt has 5 labels"


def _case_wrong_l(t, b):
    _edit_toml(b, "length = 4", "length = 5")
    return [], None, "flow.length = 5"


def _case_bundle_outside(t, b):
    _edit_toml(b, 'spatial = "spatial.onnx"', 'spatial = "../../etc/passwd"')
    return [], None, "points outside the bundle directory"


def _case_flow_ring_small(t, b):
    return [], "[pipeline]\nflow_ring = 8\n", "flow_ring = 8"


CASES = [_case_unknown_key, _case_unknown_section, _case_out_of_range, _case_wrong_type, _case_bad_toml,
         _case_missing_config, _case_config_not_regular, _case_config_directory, _case_flag_range,
         _case_bad_endpoint, _case_bad_scheme, _case_bad_source_name,
         _case_missing_file, _case_random_bytes, _case_empty_file, _case_no_model_dir, _case_label_count,
         _case_wrong_l, _case_bundle_outside, _case_flow_ring_small]


def test_bad_inputs_one_line_naming_the_culprit(tmp_path, tiny_bundle):
    """All cases run as concurrent subprocesses (each imports OpenCV/ONNX Runtime: ~1 s of CPU)."""
    video = _video(tmp_path)
    procs = []
    for case in CASES:
        work = tmp_path / case.__name__
        work.mkdir()
        bundle = _bundle_copy(tiny_bundle, work)
        extra, config, expect = case(work, bundle)
        args = [a for a in extra if not a.startswith("SRC=")]
        sources = [a[4:] for a in extra if a.startswith("SRC=")] or [str(video)]
        if config is not None:
            (work / "cfg.toml").write_text(config)
            args += ["--config", str(work / "cfg.toml")]
        if "--model" not in args:
            args += ["--model", str(bundle)]
        if "--publish" not in args:
            args += ["--publish", f"tcp://127.0.0.1:{free_port()}"]
        cmd = [sys.executable, "-m", "stream.cli", "run", *sources, *args, "--max-frames", "10"] \
            if "--max-frames" not in args else [sys.executable, "-m", "stream.cli", "run", *sources, *args]
        procs.append((case.__name__, expect, subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                                              stderr=subprocess.PIPE, text=True)))
        if len(procs) % 4 == 0:  # at most 4 at a time on a 2-core box
            procs[-4][2].wait(60)
    failures = []
    for name, expect, proc in procs:
        out, err = proc.communicate(timeout=120)
        lines = [line for line in err.splitlines() if line.strip()]
        ok = (proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("twostream run: error: ")
              and expect in lines[0] and "Traceback" not in err and not out)
        if not ok:
            failures.append(f"{name}: exit {proc.returncode}, stderr {err!r}, stdout {out[-300:]!r}")
        assert "hunter2" not in err + out
    assert not failures, "\n".join(failures)


def test_subscribe_bad_inputs(tmp_path):
    for args, expect in ((["--connect", "udp://x:1"], "--connect"), (["--count", "0"], "--count 0")):
        proc = subprocess.run([sys.executable, "-m", "stream.cli", "subscribe", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and expect in lines[0], proc.stderr


# --- fuzz -------------------------------------------------------------------------------------------------
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
_keys = st.sampled_from(["schema", "event", "source", "seq", "frame", "label", "score", "top", "streams", "gap",
                         "t_capture", "t_publish", "latency_ms", "stages_ms", "frames", "windows", "dropped",
                         "error", "state", "from", "to", "spatial", "temporal"])


def _valid_prediction() -> dict:
    return {"schema": 1, "event": "prediction", "source": "cam", "seq": 3, "frame": 40, "first_frame": 36,
            "t_capture": 1.0, "t_publish": 1.1, "latency_ms": 100.0, "label": "a", "score": 0.5,
            "top": [{"label": "a", "score": 0.5}], "streams": {"spatial": {"label": "a", "score": 0.4},
                                                              "temporal": {"label": "a", "score": 0.6}}}


def _decode_only_message_error(topic: bytes, payload: bytes) -> None:
    try:
        decode_message(topic, payload)
    except MessageError:
        pass


@settings(max_examples=300, deadline=None)
@given(topic=st.binary(max_size=40), payload=st.binary(max_size=200))
def test_fuzz_decode_message_random_bytes(topic, payload):
    _decode_only_message_error(topic, payload)


@settings(max_examples=400, deadline=None)
@given(event=st.sampled_from(["prediction", "eos", "status", "change", "other"]),
       changes=st.dictionaries(_keys, _json_values, max_size=5), drop=st.lists(_keys, max_size=3),
       topic=st.sampled_from([b"twostream/cam/", b"twostream/cam/status", b"twostream/other/", b"\xff"]))
def test_fuzz_decode_message_structured(event, changes, drop, topic):
    doc = _valid_prediction()
    doc.update({"event": event, "frames": 1, "windows": 1, "dropped": 0, "state": "live", "to": "a"})
    doc.update(changes)
    for key in drop:
        doc.pop(key, None)
    payload = json.dumps(doc, allow_nan=True).encode()
    _decode_only_message_error(topic, payload)


# Valid messages must decode to exactly what was sent: without this the fuzz tests above would also pass if
# decode_message rejected everything. The payloads are written here as plain dicts (the published field
# layout of schema 1), not by the encoder under test.
_sources = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_labels = st.text(min_size=1, max_size=12)
_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
_count = st.integers(0, 2**53)
_label_scores = st.builds(lambda lab, sc: {"label": lab, "score": sc}, _labels, _finite)


@st.composite
def _valid_messages(draw):
    source = draw(_sources)
    event = draw(st.sampled_from(["prediction", "change", "eos", "status"]))
    head = {"schema": 1, "event": event, "source": source}
    if event == "prediction":
        doc = {**head, "seq": draw(_count), "frame": draw(_count), "first_frame": draw(_count),
               "t_capture": draw(_finite), "t_publish": draw(_finite), "latency_ms": draw(_finite),
               "stages_ms": draw(st.dictionaries(st.sampled_from(["flow", "inference"]), _finite, max_size=2)),
               "label": draw(_labels), "score": draw(_finite),
               "top": draw(st.lists(_label_scores, min_size=1, max_size=3)),
               "streams": {"spatial": draw(_label_scores), "temporal": draw(_label_scores)}}
    elif event == "change":
        doc = {**head, "from": draw(st.none() | _labels), "to": draw(_labels), "frame": draw(_count),
               "t_capture": draw(_finite), "score": draw(_finite), "seq": draw(_count)}
    elif event == "eos":
        doc = {**head, "frames": draw(_count), "windows": draw(_count), "dropped": draw(_count)}
        if draw(st.booleans()):
            doc["error"] = draw(st.text(min_size=1, max_size=20))
    else:
        doc = {**head, "state": draw(st.sampled_from(["live", "reconnecting", "ended", "failed"])),
               "fps": draw(_finite), "frames": draw(_count)}
    return doc


@settings(max_examples=300, deadline=None)
@given(doc=_valid_messages())
def test_fuzz_valid_messages_round_trip(doc):
    from stream.client import Change, EndOfStream, Prediction, Status
    from stream.client import decode_message as public_decode

    kind = "status" if doc["event"] == "status" else ""
    topic = f"twostream/{doc['source']}/{kind}".encode()
    payload = json.dumps(doc).encode()
    msg = public_decode(topic, payload)  # must not raise: this is valid output
    want = {"prediction": Prediction, "change": Change, "eos": EndOfStream, "status": Status}[doc["event"]]
    assert type(msg) is want and msg.source == doc["source"]
    if want is Prediction:
        assert (msg.seq, msg.frame, msg.label, msg.score) == (doc["seq"], doc["frame"], doc["label"], doc["score"])
        assert [(x.label, x.score) for x in msg.top] == [(x["label"], x["score"]) for x in doc["top"]]
        assert (msg.spatial.label, msg.temporal.score) == (doc["streams"]["spatial"]["label"],
                                                           doc["streams"]["temporal"]["score"])
        assert (msg.t_capture, msg.latency_ms, msg.first_frame) == (doc["t_capture"], doc["latency_ms"],
                                                                   doc["first_frame"])
    elif want is Change:
        assert (msg.from_label, msg.to_label, msg.frame, msg.seq) == (doc["from"], doc["to"], doc["frame"],
                                                                      doc["seq"])
    elif want is EndOfStream:
        assert (msg.frames, msg.windows, msg.dropped, msg.error) == (doc["frames"], doc["windows"], doc["dropped"],
                                                                     doc.get("error", ""))
    else:
        assert msg.state == doc["state"] and msg.details == {"fps": doc["fps"], "frames": doc["frames"]}
    assert msg.to_payload() == doc  # and back to the same published dict
    with pytest.raises(MessageError):  # the same payload on another source's topic is not accepted
        public_decode(f"twostream/{doc['source']}x/{kind}".encode(), payload)


def test_decode_message_pathological_json():
    for payload in (b"[" * 100_000 + b"]" * 100_000, b'{"schema": 1, "seq": ' + b"9" * 5000 + b"}",
                    b'{"schema": 1e999}', b"\xef\xbb\xbf{}", b'{"schema":1,"source":"cam","event":"eos"}'):
        _decode_only_message_error(b"twostream/cam/", payload)


_toml_scalars = (st.integers(-5, 5000) | st.floats(allow_nan=True, allow_infinity=True) | st.booleans()
                 | st.text(max_size=12) | st.sampled_from(["../x", "/etc/passwd", "labels.txt", "spatial.onnx",
                                                           "", "sub/../spatial.onnx", "nul\0"]))
_toml_values = _toml_scalars | st.lists(_toml_scalars, max_size=4)
_bundle_keys = {
    "model": ["input_size", "mean", "std", "labels", "spatial", "temporal", "arch"],
    "flow": ["backend", "preset", "bound", "stacking", "length"],
    "fusion": ["spatial", "temporal"],
}


@pytest.fixture(scope="module")
def fuzz_bundle(tiny_bundle, tmp_path_factory) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("fuzz") / "bundle"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(section=st.sampled_from(list(_bundle_keys)), data=st.data(), labels=st.text(max_size=40),
       raw=st.one_of(st.none(), st.binary(max_size=80)))
def test_fuzz_read_bundle(fuzz_bundle, section, data, labels, raw):
    """Edit one table of a real bundle.toml with arbitrary values (or replace the files with junk):
    read_bundle returns a Bundle or raises BundleError - nothing else."""
    original = (fuzz_bundle / "bundle.toml").read_text()
    original_labels = (fuzz_bundle / "labels.txt").read_text()
    try:
        if raw is not None:
            (fuzz_bundle / "bundle.toml").write_bytes(raw)
        else:
            key = data.draw(st.sampled_from(_bundle_keys[section]))
            value = data.draw(_toml_values)
            lines = [line for line in original.splitlines() if not line.startswith(f"{key} =")]
            at = lines.index(f"[{section}]") + 1
            lines.insert(at, f"{key} = {toml_value(value)}")
            (fuzz_bundle / "bundle.toml").write_text("\n".join(lines) + "\n")
            (fuzz_bundle / "labels.txt").write_text(labels)
        try:
            bundle = read_bundle(fuzz_bundle)
        except BundleError as exc:
            assert str(exc)
        else:
            root = fuzz_bundle.resolve()
            for f in (bundle.spatial_file, bundle.temporal_file):
                assert root in f.resolve().parents
            assert 16 <= bundle.input_size <= 1024 and 1 <= bundle.flow_length <= 64 and bundle.labels
    finally:
        (fuzz_bundle / "bundle.toml").write_text(original)
        (fuzz_bundle / "labels.txt").write_text(original_labels)
