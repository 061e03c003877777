"""The stage runtime: what every stage process (capture, flow, inference) sets up and tears down alike.

`stage_runtime()` is a context manager used by every stage main. Inside it a stage has:
its process name (ts-flow, ts-inference, ts-capture:N), Ctrl-C/SIGTERM ignored (the supervisor decides
how to drain and stop), one ZeroMQ context whose sockets are all closed on the way out, the shared
stats board, a parent-alive check, and logging that goes to the supervisor (which prints it with
its own format and level). FFmpeg and OpenCV write their chatter straight to file descriptor 2 from
C (`[tcp @ 0x...] Connection ... refused`, `[ WARN:0@0.2] global cap.cpp:212 ...`); inside the
runtime fd 2 is a pipe whose lines are logged at DEBUG, so the user sees our one-line messages and
`twostream run -v` shows the chatter. Python's own sys.stderr (tracebacks, warnings) still reaches the
terminal. Measured on an unreachable RTSP URL: OPENCV_LOG_LEVEL=ERROR hides only OpenCV's `[ WARN` line
(FFmpeg's `[tcp @` line stays); OPENCV_FFMPEG_LOGLEVEL=-8 hides FFmpeg's too, but then nothing could
show it on request. The pipe catches both, and any other library writing to fd 2 from C.
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import re
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("twostream")


@dataclass(frozen=True)
class StageLink:
    """What every stage gets from the supervisor beside its job: where its log records go."""

    log_endpoint: str = ""  # the supervisor's results socket (PULL); "": log to this process's stderr
    log_level: int = logging.INFO  # records below it are not even sent (the chatter is DEBUG)


@dataclass(frozen=True)
class StageLog:
    """Stage -> supervisor (pickled over the results socket): one log record, re-logged there."""

    name: str  # logger name
    level: int
    message: str


class _ForwardHandler(logging.Handler):
    """Sends each record to the supervisor; never blocks (a full queue drops the record)."""

    def __init__(self, socket):
        super().__init__()
        self.socket = socket

    def emit(self, record: logging.LogRecord) -> None:
        import zmq

        if self.socket is None:  # closed: the stage is exiting
            return
        try:  # Handler.handle holds self.lock: the chatter thread and the main thread take turns on the socket
            self.socket.send_pyobj(StageLog(record.name, record.levelno, self.format(record)), flags=zmq.NOBLOCK)
        except zmq.Again:
            pass
        except Exception:
            self.handleError(record)

    def detach(self) -> None:
        with self.lock:
            self.socket = None


# user:password@ in a URL (an RTSP camera's): never logged, even from FFmpeg's chatter
_CREDENTIALS = re.compile(r"(\w+://[^:/@\s]+):[^@\s]*@")


def mask_credentials(text: str) -> str:
    return _CREDENTIALS.sub(r"\1:***@", text)


class _ChatterPump:
    """File descriptor 2 -> a pipe; a thread logs each line at DEBUG. Python's sys.stderr keeps the terminal."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        sys.stderr.flush()
        self.saved = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self.read = read
        self.python_stderr = sys.stderr
        sys.stderr = open(self.saved, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
        self.lines = 0
        self.thread = threading.Thread(target=self._pump, name="stderr-pump", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self.read, 65536)
            except OSError:
                break
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self._log(line)
        if pending:
            self._log(pending)
        os.close(self.read)

    def _log(self, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip("\r").rstrip()
        if text:
            self.lines += 1
            log.debug("%s: %s", self.prefix, mask_credentials(text))

    def close(self) -> None:
        """Give fd 2 back; the pipe's last writer is gone with it, so the thread sees EOF after the last line."""
        sys.stderr.flush()
        sys.stderr = self.python_stderr
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.thread.join(2.0)


class Stage:
    """What a stage main works with; made and cleaned up by `stage_runtime()`."""

    def __init__(self, name: str, ctx, stats, parent: int):
        self.name = name
        self.ctx = ctx
        self.stats = stats  # StatsBoard or None
        self.parent = parent
        self._sockets: list = []

    def pull(self, bind: str):
        """PULL bound at `bind` (this stage's inbox); closed without lingering."""
        import zmq

        sock = self.ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(bind)
        self._sockets.append(sock)
        return sock

    def push(self, connect: str, *, linger_ms: int = 2000, hwm: int = 0):
        """PUSH connected to `connect`. hwm 0 never drops (events are small and bounded by the rings); the
        socket lingers `linger_ms` at close so an end-of-stream marker is delivered when the stage exits."""
        import zmq

        sock = self.ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.LINGER, linger_ms)
        sock.connect(connect)
        self._sockets.append(sock)
        return sock

    @staticmethod
    def settle() -> None:
        """Call once, right before the stage's loop: everything made while starting up (modules, models) moves
        out of the garbage collector's reach. A full collection walked those ~36,000 objects in 30-46 ms
        (more with cold caches); every stage ran one every few seconds at 32 sources, and one such pause in
        the flow stage was a 120 ms stall that dropped a frame of every source at the same instant."""
        import gc

        gc.collect()
        gc.freeze()

    def alive(self) -> bool:
        """False once the supervisor is gone (this process was re-parented): do not linger."""
        return os.getppid() == self.parent

    def running(self, stop) -> bool:
        return not stop.is_set() and self.alive()

    def close_sockets(self) -> None:
        for sock in reversed(self._sockets):
            sock.close()  # each with its own LINGER
        self._sockets.clear()


@contextlib.contextmanager
def stage_runtime(link: StageLink | None = None, *, stats: tuple[str, int] | None = None, name: str | None = None):
    """Set up a stage process, yield its `Stage`, and tear everything down in reverse, however it ends.

    `stats`: (name, rows) of the supervisor's StatsBoard to attach. `name`: defaults to the process's
    multiprocessing name (twostream-flow -> ts-flow).
    """
    import zmq

    from stream.runtime.shm import StatsBoard

    link = link or StageLink()
    name = name or multiprocessing.current_process().name.replace("twostream-", "ts-")
    ignore_interrupts(name)
    ctx = zmq.Context()
    pump = _ChatterPump(name)  # first: a handler writing to stderr must get the terminal, not the pipe
    handler, log_socket = _setup_logging(ctx, link)
    board = None
    stage = None
    try:
        board = StatsBoard(stats[0], stats[1], create=False) if stats is not None else None
        stage = Stage(name, ctx, board, os.getppid())
        yield stage
    finally:
        pump.close()
        if stage is not None:
            stage.close_sockets()
        logging.getLogger().removeHandler(handler)
        if isinstance(handler, _ForwardHandler):
            handler.detach()
        if log_socket is not None:
            log_socket.close()
        ctx.term()
        if board is not None:
            board.close()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now (the terminal's copy while fd 2 is the chatter pipe)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _setup_logging(ctx, link: StageLink):
    """Root logger of this process -> the supervisor (or this process's stderr when there is none)."""
    import zmq

    root = logging.getLogger()
    root.setLevel(link.log_level)
    for h in list(root.handlers):
        root.removeHandler(h)
    sock = None
    if link.log_endpoint:
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, 1000)  # bounded: a flood of chatter is dropped, never queued without end
        sock.setsockopt(zmq.LINGER, 1000)  # a last warning still reaches the supervisor when the stage exits
        sock.connect(link.log_endpoint)
        handler: logging.Handler = _ForwardHandler(sock)
    else:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("twostream: %(message)s"))
    root.addHandler(handler)
    return handler, sock


def ignore_interrupts(name: str | None = None) -> None:
    """Stages ignore Ctrl-C (sent to the whole process group): the supervisor decides how to drain and stop.

    Also names the process after its stage (ts-flow, ts-inference, ts-capture:N) so `top`/`ps -o comm`
    and tests can tell the stages apart.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    name_process(name or multiprocessing.current_process().name.replace("twostream-", "ts-"))


def name_process(name: str) -> None:
    """Set the kernel's process name (Linux, 15 characters); a no-op elsewhere."""
    try:
        Path("/proc/self/comm").write_text(name[:15])
    except OSError:
        pass


@contextlib.contextmanager
def quiet_stderr():
    """Silence file descriptor 2 (FFmpeg and OpenCV write there from C) for a probe whose failure we
    report ourselves in one clear line."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def event_sockets(ctx, *, bind: str | None = None, connect: str | None = None, linger_ms: int = 2000):
    """(pull, push) for a stage's local event sockets: PULL bound at `bind`, PUSH connected to `connect`.

    The PUSH side never drops (SNDHWM 0: events are small and bounded by the rings) and lingers
    `linger_ms` at close so an end-of-stream marker is delivered when the stage exits.
    """
    import zmq

    pull = push = None
    if bind is not None:
        pull = ctx.socket(zmq.PULL)
        pull.bind(bind)
    if connect is not None:
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.SNDHWM, 0)
        push.setsockopt(zmq.LINGER, linger_ms)
        push.connect(connect)
    return pull, push


class SharedFlag:
    """A process-shared on/off flag with no lock or condition variable inside.

    multiprocessing.Event is built on a shared Condition: when a process blocked in wait() is
    killed (kill -9 of a capture), a later set() waits forever for it to wake. A plain shared byte
    that waiters poll cannot be left in such a state by a dead process.
    """

    def __init__(self, mp_context):
        self._value = mp_context.RawValue("b", 0)

    def set(self) -> None:
        self._value.value = 1

    def is_set(self) -> bool:
        return bool(self._value.value)

    def wait(self, timeout: float | None = None, poll: float = 0.005) -> bool:
        """Sleep until set (True) or `timeout` seconds passed (False)."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._value.value:
            left = poll if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(poll, left))
        return True
