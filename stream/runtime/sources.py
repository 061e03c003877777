"""SOURCE arguments: webcam index, rtsp/http(s) URL or video file, with an optional `name=` prefix."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from stream.core.errors import SourceError

LIVE_SCHEMES = ("rtsp", "rtsps", "http", "https")
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(url: str, environ=None) -> str:
    """Replace ${NAME} in a URL with the environment variable NAME, so a camera password can stay out of
    the command line (which every local user can read in `ps`): 'rtsp://admin:${CAM1_PASSWORD}@10.0.0.5/'."""
    environ = os.environ if environ is None else environ

    def value(m: re.Match) -> str:
        if m.group(1) not in environ:
            raise SourceError(f"source {mask_url(_ENV_REF.sub('***', url))!r}: environment variable "
                              f"{m.group(1)} is not set")
        return environ[m.group(1)]

    return _ENV_REF.sub(value, url)


@dataclass(frozen=True)
class SourceSpec:
    name: str  # topic-safe: twostream/<name>/
    kind: str  # "file" | "url" | "webcam"
    target: str  # path, URL (may hold credentials: never log it) or webcam index as text
    display: str  # what logs and messages show: the URL with its password masked

    @property
    def live(self) -> bool:
        return self.kind != "file"


def mask_url(url: str) -> str:
    """rtsp://user:secret@host/x -> rtsp://user:***@host/x (anything after '@' is kept)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None and "@" not in parts.netloc:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def _derive_name(kind: str, target: str) -> str:
    if kind == "webcam":
        base = f"webcam{target}"
    elif kind == "file":
        base = Path(target).stem
    else:
        parts = urlsplit(target)
        host = parts.hostname or "stream"
        path = parts.path.strip("/").replace("/", "_")
        base = f"{host}_{path}" if path else host
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", base).strip("_.-") or "source"
    return base[:64]


def parse_source(arg: str) -> SourceSpec:
    """Parse one SOURCE argument; does not touch the file system or network."""
    name = None
    head, sep, rest = arg.partition("=")
    if sep and "://" not in head and not head.isdigit() and "/" not in head:
        name, arg = head, rest
        if not _NAME_OK.match(name):
            raise SourceError(f"source name {name!r}: use 1-64 letters, digits, '_', '.', '-' "
                              "(starting with a letter or digit)")
    if not arg:
        raise SourceError("empty SOURCE: give a webcam index, an rtsp/http URL or a video file")
    if arg.isdigit():
        kind, target, display = "webcam", str(int(arg)), f"webcam {int(arg)}"
    elif "://" in arg:
        scheme = arg.split("://", 1)[0].lower()
        if scheme not in LIVE_SCHEMES:
            raise SourceError(
                f"source {mask_url(arg)!r}: unknown URL scheme {scheme!r} "
                "(use rtsp://, http:// or https://, or a file path)"
            )
        target = expand_env(arg)
        kind, display = "url", mask_url(target)
    else:
        kind, target, display = "file", arg, arg
    return SourceSpec(name=name or _derive_name(kind, target), kind=kind, target=target, display=display)


def parse_sources(args: list[str]) -> list[SourceSpec]:
    """Parse all SOURCE arguments; derived names that collide get -2, -3... suffixes."""
    specs, seen = [], set()
    for arg in args:
        spec = parse_source(arg)
        name = spec.name
        if name in seen:
            explicit = "=" in arg.split("://", 1)[0]
            if explicit:
                raise SourceError(f"source name {name!r} is used twice")
            n = 2
            while f"{name}-{n}" in seen:
                n += 1
            name = f"{name}-{n}"
            spec = SourceSpec(name=name, kind=spec.kind, target=spec.target, display=spec.display)
        seen.add(name)
        specs.append(spec)
    return specs
