"""Settings: config.toml -> typed dataclasses, validated; CLI flags override single keys.

Every key has a type and an allowed range or set; a bad value is reported with the
key, the value and what is allowed. Unknown keys are errors (a typo must not be
silently ignored).
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from stream.core.errors import ConfigError
from stream.core.setting import check_setting, setting
from stream.core.policy import PolicySettings


_opt = setting
_check = check_setting


@dataclass(frozen=True)
class PipelineSettings:
    model: str = "models/default"
    stride: int = _opt(5, lo=1, hi=1000)
    frame_ring: int = _opt(32, lo=4, hi=4096)
    flow_ring: int = _opt(64, lo=4, hi=4096)
    max_batch: int = _opt(16, lo=1, hi=1024)
    pace: str = _opt("realtime", choices=("realtime", "fast"))
    max_frames: int = _opt(0, lo=0)
    live_queue: int = _opt(3, lo=1, hi=1000)
    max_restarts: int = _opt(5, lo=0, hi=1000)
    stop_timeout: float = _opt(10.0, lo=0.5, hi=600.0)
    flow_device: str = _opt("cpu", choices=("cpu", "cuda"))
    cuda_flow_backend: str = _opt("same", choices=("same", "farneback", "tvl1", "nvof"))
    allow_other_flow: bool = False


@dataclass(frozen=True)
class EngineSettings:
    kind: str = _opt("auto", choices=("auto", "onnxruntime", "tensorrt"))
    threads: int = _opt(1, lo=0, hi=256)


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
    curve_secret_key: str = ""  # CURVE: server certificate with secret key ("": no encryption), see stream.runtime.security
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
    engine: EngineSettings = field(default_factory=EngineSettings)
    fusion: FusionSettings = field(default_factory=FusionSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    publish: PublishSettings = field(default_factory=PublishSettings)
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    preview: PreviewSettings = field(default_factory=PreviewSettings)


def settings_from_dict(doc: dict, where: str = "config") -> Settings:
    settings = Settings()
    known = {f.name: f for f in fields(Settings)}
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


def load_settings(path: str | Path | None = None) -> Settings:
    """Read a config file (None: defaults only)."""
    if path is None:
        return Settings()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return settings_from_dict(doc, where=str(path))


def override(settings: Settings, section: str, key: str, value: Any, flag: str) -> Settings:
    """Apply one CLI flag on top of the file's settings, with the same validation."""
    current = getattr(settings, section)
    spec = {f.name: f for f in fields(current)}[key]
    return replace(settings, **{section: replace(current, **{key: _check(section, key, spec, value, flag)})})
