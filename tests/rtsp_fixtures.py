"""Fixtures for the reliability tests: a real RTSP server (GstRtspServer, run by the system python3),
H.264 fixture clips made with Debian ffmpeg, a tiny bundle, and a pipeline run as a real subprocess
with a real ZeroMQ subscriber collecting what it publishes.

Import the fixtures into a test module with `from rtsp_fixtures import *  # noqa: F403`.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from stream.core.ports import free_port
from stream.core.toml_writer import write_toml

ROOT = Path(__file__).resolve().parents[1]
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"

__all__ = ["free_port", "shm_segments", "RtspServer", "PipelineRun", "Collector", "running", "write_config",
           "rtsp_server", "h264_clip", "tiny_bundle", "silent_server", "gst_rtsp_ok", "ROOT"]


def shm_segments() -> set[str]:
    """twostream's shared-memory segments now on the machine (all are named ts...; other runs' included)."""
    return {p.name for p in Path("/dev/shm").iterdir() if p.name.startswith("ts")}


def _gst_rtsp_available() -> str:
    """'' when the system python can run GstRtspServer with the elements we need, else the reason."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is missing (the RTSP test server needs the system python with gi)"
    probe = ("import gi; gi.require_version('Gst','1.0'); gi.require_version('GstRtspServer','1.0');"
             "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
             "missing=[e for e in ('filesrc','qtdemux','h264parse','valve','rtph264pay') "
             "if Gst.ElementFactory.find(e) is None]; print(' '.join(missing))")
    try:
        out = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"system python cannot probe GStreamer: {exc}"
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        return f"GstRtspServer (python3-gi, gir1.2-gst-rtsp-server-1.0) is not usable: {last}"
    if out.stdout.strip():
        return f"GStreamer elements missing: {out.stdout.strip()} (gstreamer1.0-plugins-good/bad)"
    return ""


class RtspServer:
    """tests/rtsp_server.py in a subprocess; stop()/start() keep the same port (a camera that reboots)."""

    def __init__(self, clip: Path, *, port: int | None = None, mount: str = "/stream", user: str | None = None,
                 password: str | None = None, silent: bool = False):
        self.clip = clip
        self.port = port or free_port()
        self.mount = mount
        self.user, self.password = user, password
        self.silent = silent
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f"{self.user}:{self.password}@" if self.user else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}{self.mount}"

    def start(self, timeout: float = 15.0) -> "RtspServer":
        cmd = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port)]
        if self.silent:
            cmd.append("--silent")
        else:
            cmd += ["--file", str(self.clip), "--mount", self.mount]
            if self.user:
                cmd += ["--user", self.user, "--password", self.password or ""]
        deadline = time.monotonic() + timeout
        while True:  # the port can stay busy for a moment after a stop (TIME_WAIT is fine, a listener is not)
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True, env={**os.environ, "GST_DEBUG": "0"})
            line = self.proc.stdout.readline()
            if line.startswith("READY"):
                return self
            self.proc.kill()
            self.proc.wait()
            if time.monotonic() > deadline:
                raise RuntimeError(f"RTSP test server did not start: {line!r} {self.proc.stderr.read()[-500:]}")
            time.sleep(0.2)

    def command(self, text: str) -> None:
        assert self.proc is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        if text in ("pause", "resume"):
            assert self.proc.stdout.readline().strip() == f"OK {text}"

    def stop(self) -> None:
        """Kill the server abruptly (like a camera losing power): no RTSP TEARDOWN, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def close(self) -> None:
        self.stop()


def _make_clip(src: Path, out: Path, *, seconds_loops: int = 3, faststart: bool = True) -> Path:
    cmd = ["ffmpeg", "-v", "error", "-y", "-stream_loop", str(seconds_loops), "-i", str(src), "-an",
           "-vf", "scale=160:120", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25",
           "-pix_fmt", "yuv420p"]
    if faststart:
        cmd += ["-movflags", "+faststart"]
    subprocess.run(cmd + [str(out)], check=True, capture_output=True, timeout=120)
    return out


@pytest.fixture(scope="session")
def h264_clip(shared_data, tmp_path_factory) -> Path:
    """A 26 s 160x120 25 fps H.264 mp4 (moov first) made from the shared replay clip with Debian ffmpeg."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("Debian ffmpeg (with libx264) is not installed: cannot make the H.264 fixture clip")
    src = shared_data / "replay" / "mmaction2_test.avi"
    if not src.is_file():
        pytest.skip(f"{src} is missing from the shared data")
    return _make_clip(src, tmp_path_factory.mktemp("clips") / "clip.mp4")


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A real (random, seeded) two-stream bundle: input 32, L = 4 - keeps CPU low."""
    from train.testing import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny", input_size=32, flow_length=4)


@pytest.fixture(scope="session")
def gst_rtsp_ok() -> None:
    reason = _gst_rtsp_available()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def rtsp_server(gst_rtsp_ok, h264_clip):
    """Factory: rtsp_server(**kw) starts a server on a free port; all are killed after the test."""
    servers: list[RtspServer] = []

    def start(**kw) -> RtspServer:
        server = RtspServer(h264_clip, **kw).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def silent_server(gst_rtsp_ok):
    """A TCP server that accepts RTSP connections and never answers."""
    server = RtspServer(Path("/dev/null"), silent=True).start()
    yield server
    server.close()


def write_config(path: Path, **sections: dict) -> Path:
    """Write a TOML config from {section: {key: value}}."""
    return write_toml(path, sections)


@contextlib.contextmanager
def running(tmp: Path, sources: list[str], **kwargs):
    """`PipelineRun(tmp, sources, **kwargs)` with a `Collector` on its endpoint; both closed on the way out."""
    run = PipelineRun(tmp, sources, **kwargs)
    collector = Collector(run.endpoint)
    try:
        yield run, collector
    finally:
        collector.close()
        run.close()


class Collector:
    """A real ZeroMQ subscriber in a thread: every decoded message with its arrival time."""

    def __init__(self, endpoint: str, *, curve: dict | None = None):
        import zmq

        from stream.clients.client import Subscriber

        self.ctx = zmq.Context()
        self.sub = Subscriber(endpoint, status=True, timeout=0.1, ctx=self.ctx, curve=curve)
        self.messages: list[tuple[float, object]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.sub.recv()
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), msg))

    def of(self, cls, source: str | None = None) -> list:
        return [m for _, m in list(self.messages) if isinstance(m, cls) and (source is None or m.source == source)]

    def wait_for(self, predicate, timeout: float) -> float | None:
        """Monotonic arrival time of the first message matching predicate, waiting up to timeout."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            items = list(self.messages)
            for t, m in items[seen:]:
                if predicate(m):
                    return t
            seen = len(items)
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sub.close()
        self.ctx.term()


class PipelineRun:
    """`twostream run` as a real subprocess (python -m stream.cli run), output captured to files."""

    def __init__(self, tmp: Path, sources: list[str], *, bundle: Path, config: Path | None = None,
                 extra: list[str] | None = None, endpoint: str | None = None):
        self.endpoint = endpoint or f"tcp://127.0.0.1:{free_port()}"
        self.out_path, self.err_path = tmp / "run.out", tmp / "run.err"
        cmd = [sys.executable, "-m", "stream.cli", "run", *sources, "--model", str(bundle),
               "--publish", self.endpoint, "--engine", "onnxruntime", "--threads", "1"]
        if config is not None:
            cmd += ["--config", str(config)]
        cmd += extra or []
        self._out, self._err = open(self.out_path, "w"), open(self.err_path, "w")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._out, stderr=self._err)

    def children(self) -> dict[str, int]:
        """Stage processes by name (ts-flow, ts-inference, ts-capture:N, see stream.runtime.stage) -> pid."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may contain spaces, so split after the last ')'
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            if ppid == self.proc.pid and comm.startswith("ts-"):
                found[comm] = int(entry.name)
        return found

    def shm_names(self) -> set[str]:
        """The /dev/shm/ts* segments this run's supervisor has mapped (other runs on the machine excluded)."""
        names = set()
        try:
            maps = Path(f"/proc/{self.proc.pid}/maps").read_text()
        except OSError:
            return names
        for line in maps.splitlines():
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            if path.startswith("/dev/shm/ts"):
                names.add(path.rsplit("/", 1)[1])
        return names

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._out.flush()
            self._err.flush()

    @property
    def stdout(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        if not self._err.closed:
            self._err.flush()
        return self.err_path.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()
        self._err.close()
