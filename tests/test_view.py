"""Live view and annotated replays: `twostream run --preview` + `twostream view` loaded in headless Chromium,
and `twostream run --annotate OUT.mp4`, all on real footage over real ZeroMQ/HTTP sockets.

The page test also writes the screenshot the docs use:
  TWOSTREAM_VIEW_MODEL=models/default TWOSTREAM_VIEW_CLIP=PATH TWOSTREAM_VIEW_SCREENSHOT=docs/view.png \
      .venv/bin/pytest tests/test_view.py -k page
"""
from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq
from conftest import ROOT, count_frames, free_port

from stream.clients.client import EndOfStream, Prediction, Subscriber

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def read_frames(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def start_view(endpoint: str) -> tuple[subprocess.Popen, str]:
    """`twostream view --port 0` as a subprocess; returns it and the URL it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "view", "--connect", endpoint, "--port", "0"],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            assert proc.poll() is None, "twostream view exited before serving"
            continue
        m = re.search(r"serving (http://127\.0\.0\.1:\d+/)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise AssertionError("twostream view printed no URL within 20 s")


def stop(proc: subprocess.Popen, sig=signal.SIGINT, timeout: float = 10.0) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{proc.args[3]} did not stop within {timeout:g} s of {sig.name}") from None
    return proc.returncode


class Collector:
    """Predictions via stream.clients.client.Subscriber and raw preview messages via a plain SUB socket, in threads."""

    def __init__(self, endpoint: str):
        self.predictions: list[Prediction] = []
        self.previews: list[list[bytes]] = []
        self.eos = threading.Event()
        self._stop = threading.Event()
        self._sub = Subscriber(endpoint, timeout=0.2)
        ctx = zmq.Context.instance()
        self._raw = ctx.socket(zmq.SUB)
        self._raw.setsockopt(zmq.LINGER, 0)
        self._raw.setsockopt(zmq.SUBSCRIBE, b"twostream/")
        self._raw.connect(endpoint)
        self._threads = [threading.Thread(target=self._messages, daemon=True),
                         threading.Thread(target=self._raw_loop, daemon=True)]
        for t in self._threads:
            t.start()

    def _messages(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._sub.recv()
            except TimeoutError:
                continue
            if isinstance(msg, Prediction):
                self.predictions.append(msg)
            elif isinstance(msg, EndOfStream):
                self.eos.set()

    def _raw_loop(self) -> None:
        while not self._stop.is_set():
            if self._raw.poll(200):
                parts = self._raw.recv_multipart()
                if parts[0].endswith(b"/preview"):
                    self.previews.append(parts)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        self._sub.close()
        self._raw.close(0)


@pytest.fixture
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not installed at {CHROMIUM} (apt-get install chromium; `make test` does it as root)")
    return CHROMIUM


def test_page_shows_live_tile_matching_the_published_predictions(shared_data, tiny_bundle, chromium_path, tmp_path):
    from playwright.sync_api import sync_playwright

    model = os.environ.get("TWOSTREAM_VIEW_MODEL") or str(tiny_bundle)
    clip = Path(os.environ.get("TWOSTREAM_VIEW_CLIP") or shared_data / "replay" / "exercise.avi")  # 10 fps
    source = clip.stem
    fps = cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FPS)
    max_frames = min(count_frames(clip), int(9 * fps))  # about 9 s of realtime replay
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    collector = Collector(endpoint)
    view, url = start_view(endpoint)
    pipeline = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "run", "--model", model, "--preview", "--pace", "realtime",
         "--max-frames", str(max_frames), "--publish", endpoint, "-q", f"{source}={clip}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tile = f'.tile[data-source="{source}"]'
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 900, "height": 640})
            page.goto(url)
            # While the pipeline runs: a live tile with a prediction and a loaded preview image.
            page.wait_for_selector(f'{tile}[data-state="live"]:not([data-seq=""]) img.shown', timeout=30_000)
            live_seq = page.get_attribute(tile, "data-seq")
            page.wait_for_timeout(1500)  # let the timeline fill a little for the picture
            full = tmp_path / "view.png"
            page.screenshot(path=str(full), full_page=True)
            # After the end of stream the page must settle on the last prediction published.
            page.wait_for_selector(f'{tile}[data-state="ended"]', timeout=60_000)
            assert pipeline.wait(30) == 0, pipeline.stderr.read()
            assert collector.eos.wait(10), "the subscriber saw no end of stream"
            last = collector.predictions[-1]
            time.sleep(0.3)  # one more SSE snapshot interval
            assert page.get_attribute(tile, "data-seq") == str(last.seq)
            assert page.inner_text(f"{tile} .label") == last.label
            assert page.inner_text(f"{tile} .score") == f"{last.score:.2f}"
            assert page.locator(f"{tile} .top .row .lbl").all_inner_texts() == [t.label for t in last.top]
            streams = page.inner_text(f"{tile} .streams")
            assert f"spatial {last.spatial.label}" in streams and f"temporal {last.temporal.label}" in streams
            assert "latency" in page.inner_text(f"{tile} .meta")
            assert page.locator(f"{tile} .timeline .chip").count() >= 1
            assert live_seq != "" and int(live_seq) < last.seq  # it really updated live
            png = page.locator(f"{tile} img.preview").screenshot()
            browser.close()
    finally:
        pipeline.kill() if pipeline.poll() is None else None
        view_rc = stop(view)
        collector.close()
    assert view_rc == 0  # Ctrl-C is a clean shutdown
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[0] > 50 and image.shape[1] > 50
    assert float(image.std()) > 10.0, "the preview tile is blank"
    # The previews on the socket: JPEGs of the stated size, numbered like the predictions' frames.
    assert collector.previews, "no preview message was published"
    width = cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FRAME_WIDTH)
    for topic, header_bytes, jpeg in collector.previews[:5]:
        header = json.loads(header_bytes)
        assert topic == f"twostream/{source}/preview".encode()
        assert header["event"] == "preview" and header["source"] == source and 0 <= header["frame"] < max_frames
        decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape[:2] == (header["height"], header["width"])
        assert header["width"] == min(320, int(width))
    frames = [json.loads(p[1])["frame"] for p in collector.previews]
    assert frames == sorted(frames) and len(frames) < max_frames  # rate-limited, in order
    if os.environ.get("TWOSTREAM_VIEW_SCREENSHOT"):
        shutil.copy(full, os.environ["TWOSTREAM_VIEW_SCREENSHOT"])


def test_view_server_rejects_malformed_messages_and_unknown_paths(tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(endpoint)
    view, url = start_view(endpoint)
    try:
        def state() -> dict:
            with urllib.request.urlopen(url + "state", timeout=5) as r:
                return json.loads(r.read())

        bad = [[b"twostream/cam/", b"{not json"],
               [b"twostream/cam/preview", json.dumps({"schema": 1, "event": "preview", "source": "cam", "frame": 1,
                                                      "t_capture": 1.0, "width": 2, "height": 2}).encode(),
                b"<html>not a jpeg"],
               [b"twostream/other/preview", b"{}", b"\xff\xd8"]]
        deadline = time.time() + 10
        while state()["malformed"] < len(bad) and time.time() < deadline:  # slow joiner: resend until seen
            for parts in bad:
                pub.send_multipart(parts)
            time.sleep(0.2)
        snap = state()
        assert snap["malformed"] >= len(bad) and snap["sources"] == []
        for path in ("frame/cam.jpg", "frame/..%2F..%2Fetc%2Fpasswd.jpg", "nothing-here"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(url + path, timeout=5)
            assert err.value.code == 404
        with urllib.request.urlopen(url, timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/html") and b"EventSource" in r.read()
    finally:
        rc = stop(view, signal.SIGTERM)
        pub.close(0)
    assert rc == 0


def test_annotate_writes_every_frame_with_labels_from_the_first_window_on(shared_data, tiny_bundle, tmp_path):
    clip = shared_data / "replay" / "mmaction2_test.avi"
    out = tmp_path / "annotated.mp4"
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", "run", "--model", str(tiny_bundle), "--pace", "fast", "--print",
         "--json", "--annotate", str(out), "--publish", endpoint, "-q", str(clip)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    preds = [json.loads(line) for line in proc.stdout.splitlines() if '"prediction"' in line]
    assert preds
    original, annotated = read_frames(clip), read_frames(out)
    assert len(annotated) == len(original) == count_frames(clip)
    assert annotated[0].shape == original[0].shape
    h = original[0].shape[0]
    band, rest = slice(0, h // 6), slice(h // 2, h)  # labels sit in a band at the top

    def diff(i: int, rows: slice) -> float:
        return float(np.abs(annotated[i][rows].astype(np.int16) - original[i][rows].astype(np.int16)).mean())

    for i in (0, len(original) // 2, len(original) - 1):
        assert diff(i, band) > 20.0 > diff(i, rest) * 4, f"frame {i}: no label band drawn"

    def green_bar_pixels(frame: np.ndarray) -> int:  # the fused top-1 score bar is drawn green
        b, g, r = (frame[band, :, c].astype(np.int16) for c in range(3))
        return int(((g > 150) & (r < 120) & (b < 120)).sum())

    first = min(p["frame"] for p in preds)  # the first window ends here: no bar before, a bar from here on
    assert first > 0
    assert green_bar_pixels(annotated[first - 1]) <= green_bar_pixels(original[first - 1]) + 5
    assert green_bar_pixels(annotated[first]) > green_bar_pixels(original[first]) + 100


@pytest.mark.parametrize("extra, message", [
    (["rtsp://127.0.0.1:9/cam", "--annotate", "OUT/out.mp4"], "--annotate needs exactly one video file SOURCE"),
    (["CLIP", "--annotate", "OUT/out.avi"], "must be an MP4 file"),
    (["CLIP", "CLIP", "--annotate", "OUT/out.mp4"], "--annotate needs exactly one video file SOURCE"),
])
def test_annotate_refuses_what_it_cannot_write(shared_data, tiny_bundle, tmp_path, extra, message):
    clip = str(shared_data / "replay" / "mmaction2_test.avi")
    args = [a.replace("CLIP", clip).replace("OUT", str(tmp_path)) for a in extra]
    proc = subprocess.run([sys.executable, "-m", "stream.cli", "run", "--model", str(tiny_bundle), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())
