"""Settings: config.toml -> typed dataclasses, validated; CLI flags override single keys.

Every key has a type and an allowed range or set; a bad value is reported with the
key, the value and what is allowed. Unknown keys are errors (a typo must not be
silently ignored). Renamed keys (DEPRECATED_KEYS) are still read, with a one-line warning
naming the new key.
"""
from __future__ import annotations

import logging
import stat
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from stream.core.errors import ConfigError
from stream.core.policy import PolicySettings
from stream.core.setting import check_setting, setting

_opt = setting
_check = check_setting


@dataclass(frozen=True)
class PipelineSettings:
    model: str = "models/default"
    stride: int = _opt(5, lo=1, hi=1000)
    frame_ring: int = _opt(32, lo=4, hi=4096)
    flow_ring: int = _opt(64, lo=4, hi=4096)
    max_batch: int = _opt(16, lo=1, hi=1024)
    max_batch_ms: float = _opt(40.0, lo=0.0, hi=10000.0)  # 0: batches limited by max_batch only
    # inference processes, each serving a fixed share of the sources (0: auto, see supervisor.inference_processes)
    inference_processes: int = _opt(0, lo=0, hi=256)
    pace: str = _opt("realtime", choices=("realtime", "fast"))
    max_frames: int = _opt(0, lo=0)
    live_queue: int = _opt(3, lo=1, hi=1000)
    max_restarts: int = _opt(5, lo=0, hi=1000)
    stop_timeout: float = _opt(10.0, lo=0.5, hi=600.0)


@dataclass(frozen=True)
class FlowDeviceSettings:
    """[flow]: where the flow stage computes optical flow (the algorithm itself comes from the bundle)."""

    device: str = _opt("cpu", choices=("cpu", "cuda"))
    cuda_backend: str = _opt("same", choices=("same", "farneback", "tvl1", "nvof"))
    allow_other: bool = False


@dataclass(frozen=True)
class EngineSettings:
    kind: str = _opt("auto", choices=("auto", "onnxruntime", "tensorrt", "triton"))
    threads: int = _opt(1, lo=0, hi=256)
    # kind = "triton" (engines.triton): a Triton Inference Server serving `twostream export-triton`'s models
    triton_url: str = "grpc://127.0.0.1:8001"  # grpc://host:port, or grpcs://host:port for TLS
    triton_timeout: float = _opt(5.0, lo=0.05, hi=600.0)  # seconds per request before the server counts as down
    triton_model_prefix: str = "twostream_"
    triton_ca_file: str = ""  # grpcs: PEM root certificates ("": system roots)
    triton_cert_file: str = ""  # grpcs: client certificate chain (PEM), with triton_key_file
    triton_key_file: str = ""
    outage_file_wait: float = _opt(60.0, lo=0.0, hi=86400.0)  # files (fast pace) wait this long for the server
    outage_backoff_max: float = _opt(5.0, lo=0.05, hi=600.0)  # longest pause between reconnect attempts


@dataclass(frozen=True)
class FusionSettings:
    spatial_weight: float = _opt(-1.0, lo=-1.0, hi=1000.0)  # -1: use the bundle's weight
    temporal_weight: float = _opt(-1.0, lo=-1.0, hi=1000.0)
    top_k: int = _opt(3, lo=1, hi=100)


@dataclass(frozen=True)
class PublishSettings:
    endpoint: str = "tcp://127.0.0.1:5555"
    sndhwm: int = _opt(10000, lo=1, hi=10_000_000)
    status_interval: float = _opt(1.0, lo=0.05, hi=3600.0)
    # CURVE: server certificate with secret key ("": no encryption), see stream.runtime.security
    curve_secret_key: str = ""
    curve_clients: str = ""  # directory of allowed subscribers' public *.key files ("": any client with the server key)


@dataclass(frozen=True)
class CaptureSettings:
    open_timeout: float = _opt(10.0, lo=0.1, hi=600.0)
    read_timeout: float = _opt(5.0, lo=0.1, hi=600.0)
    stall_seconds: float = _opt(3.0, lo=0.1, hi=600.0)
    reconnect_initial: float = _opt(0.5, lo=0.01, hi=600.0)
    reconnect_max: float = _opt(10.0, lo=0.01, hi=3600.0)
    reconnect_attempts: int = _opt(0, lo=0)


@dataclass(frozen=True)
class PreviewSettings:
    enabled: bool = False
    width: int = _opt(320, lo=16, hi=4096)
    fps: float = _opt(5.0, lo=0.1, hi=120.0)
    quality: int = _opt(70, lo=10, hi=100)


@dataclass(frozen=True)
class Settings:
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    flow: FlowDeviceSettings = field(default_factory=FlowDeviceSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    fusion: FusionSettings = field(default_factory=FusionSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    publish: PublishSettings = field(default_factory=PublishSettings)
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    preview: PreviewSettings = field(default_factory=PreviewSettings)


# Old (section, key) -> new (section, key). Still accepted, with a warning naming the new key.
DEPRECATED_KEYS = {
    ("pipeline", "flow_device"): ("flow", "device"),
    ("pipeline", "cuda_flow_backend"): ("flow", "cuda_backend"),
    ("pipeline", "allow_other_flow"): ("flow", "allow_other"),
}

log = logging.getLogger("twostream")


def _renamed(doc: dict, where: str) -> dict:
    """The document with deprecated keys moved to their new place (a warning each); both set is an error."""
    if not any(isinstance(doc.get(old[0]), dict) and old[1] in doc[old[0]] for old in DEPRECATED_KEYS):
        return doc
    doc = {k: dict(v) if isinstance(v, dict) else v for k, v in doc.items()}
    for (old_section, old_key), (new_section, new_key) in DEPRECATED_KEYS.items():
        section = doc.get(old_section)
        if not isinstance(section, dict) or old_key not in section:
            continue
        target = doc.setdefault(new_section, {})
        if not isinstance(target, dict):
            continue  # reported as "must be a table" below
        if new_key in target:
            raise ConfigError(f"{where}: [{old_section}] {old_key} and [{new_section}] {new_key} are the same "
                              f"setting; keep only [{new_section}] {new_key}")
        log.warning("%s: [%s] %s is deprecated; use [%s] %s", where, old_section, old_key, new_section, new_key)
        target[new_key] = section.pop(old_key)
    return doc


def settings_from_dict(doc: dict, where: str = "config") -> Settings:
    settings = Settings()
    known = {f.name: f for f in fields(Settings)}
    doc = _renamed(doc, where)
    for section, values in doc.items():
        if section not in known:
            raise ConfigError(f"{where}: unknown section [{section}] (known: {', '.join(known)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        current = getattr(settings, section)
        specs = {f.name: f for f in fields(current)}
        updates = {}
        for key, value in values.items():
            if key not in specs:
                raise ConfigError(f"{where}: unknown key [{section}] {key} (known: {', '.join(specs)})")
            updates[key] = _check(section, key, specs[key], value, where)
        settings = replace(settings, **{section: replace(current, **updates)})
    return settings


def _read_config(path: Path) -> str:
    """The file's text; ConfigError says exactly what is wrong: missing, not a regular file, unreadable."""
    name = repr(str(path))
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"config file {name} does not exist") from None
    except NotADirectoryError:  # a path component is a file
        raise ConfigError(f"config file {name} does not exist (a parent is not a directory)") from None
    except OSError as exc:
        raise ConfigError(f"config file {name} cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise ConfigError(f"config file {name} is a directory, not a regular file")
    if not stat.S_ISREG(mode):
        # /dev/null, a FIFO, a socket: reading could block or mean nothing
        raise ConfigError(f"config file {name} is not a regular file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"config file {name} cannot be read ({exc.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {name} is not valid TOML (not UTF-8 text: byte {exc.start})") from None


def load_settings(path: str | Path | None = None) -> Settings:
    """Read a config file (None: defaults only)."""
    if path is None:
        return Settings()
    path = Path(path)
    text = _read_config(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML ({exc})") from None
    return settings_from_dict(doc, where=str(path))


def override(settings: Settings, section: str, key: str, value: Any, flag: str) -> Settings:
    """Apply one CLI flag on top of the file's settings, with the same validation."""
    current = getattr(settings, section)
    spec = {f.name: f for f in fields(current)}[key]
    return replace(settings, **{section: replace(current, **{key: _check(section, key, spec, value, flag)})})
