"""Temporal annotations of continuous videos: which action is happening at each frame.

The twostream format is one JSON file per video (by convention VIDEO.json beside VIDEO.mp4):

    {
      "fps": 25.0,                 # frames per second of the video (> 0)
      "frames": 480,               # number of frames in the video (> 0)
      "segments": [                # frame intervals, end exclusive, non-overlapping, any order
        {"label": "bend", "start": 0, "end": 61},
        {"label": "wave1", "start": 61, "end": 122, "source": "weizmann4/wave1/actor0_wave1.mp4"}
      ],
      "meta": {...}                # optional, free-form provenance (ignored by the metrics)
    }

A segment has exactly the keys label (non-empty string), start, end (integers,
0 <= start < end <= frames) and optionally source (string). Frames that no segment covers
are unannotated: label_at() returns None for them and the streaming metrics skip them.
Anything else (unknown keys, overlapping segments, out-of-range frames) is an error that
names the file and the offending segment, because a silently wrong annotation gives
silently wrong delay and accuracy numbers.

Readers for the common seconds-based layouts convert them to this format with a given fps:
  * ActivityNet JSON: {"database": {VIDEO_ID: {"duration": s, "annotations": [{"segment": [s, e], "label": L}]}}}
  * THUMOS per-class text files CLASS_val.txt / CLASS_test.txt with lines "VIDEO_ID START END" (seconds).
Seconds map to the nearest frame (frame i is shown at i / fps); segments shorter than one
frame after rounding are dropped.
"""
from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from stream.core.errors import TwostreamError

MAX_ANNOTATION_BYTES = 64 * 1024 * 1024
TOP_KEYS = {"fps", "frames", "segments", "meta"}
SEGMENT_KEYS = {"label", "start", "end", "source"}
THUMOS_SUFFIXES = ("_val", "_test", "_validation")


class AnnotationError(TwostreamError):
    """An annotation file that is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class Segment:
    label: str
    start: int  # first frame
    end: int  # one past the last frame
    source: str = ""

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class LabelChange:
    """An annotated change of action: at `frame` the label becomes `to` (it was `previous`)."""

    frame: int
    previous: str
    to: str
    until: int  # end of the run of `to` that starts here (exclusive)


@dataclass(frozen=True)
class Annotation:
    fps: float
    frames: int
    segments: tuple[Segment, ...]  # sorted by start, non-overlapping
    meta: dict = field(default_factory=dict, compare=False)
    path: str = ""

    def __post_init__(self):
        object.__setattr__(self, "_starts", [s.start for s in self.segments])

    @property
    def labels(self) -> tuple[str, ...]:
        """Distinct labels in order of first appearance."""
        return tuple(dict.fromkeys(s.label for s in self.segments))

    def label_at(self, frame: int) -> str | None:
        """Label of a frame, None if unannotated or outside the video."""
        i = bisect.bisect_right(self._starts, frame) - 1  # type: ignore[attr-defined]
        if i < 0:
            return None
        seg = self.segments[i]
        return seg.label if seg.start <= frame < seg.end else None

    def changes(self) -> list[LabelChange]:
        """Annotated changes: the start of every segment whose label differs from the previous segment's.

        A gap between two segments does not hide a change (the change is dated at the start
        of the later segment); two touching or gapped segments with the same label are one action.
        `until` is where the new label's run ends (next segment start with another label, or its end).
        """
        out = []
        for i in range(1, len(self.segments)):
            prev, seg = self.segments[i - 1], self.segments[i]
            if seg.label == prev.label:
                continue
            until = seg.end
            for nxt in self.segments[i + 1:]:
                if nxt.label != seg.label:
                    break
                until = nxt.end
            out.append(LabelChange(frame=seg.start, previous=prev.label, to=seg.label, until=until))
        return out

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps

    def to_dict(self) -> dict:
        doc: dict = {"fps": self.fps, "frames": self.frames, "segments": []}
        for s in self.segments:
            d = {"label": s.label, "start": s.start, "end": s.end}
            if s.source:
                d["source"] = s.source
            doc["segments"].append(d)
        if self.meta:
            doc["meta"] = self.meta
        return doc


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_keys(d: dict, allowed: set, required: tuple, where: str) -> None:
    unknown = set(d) - allowed
    if unknown:
        raise AnnotationError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                              f"(allowed: {', '.join(sorted(allowed))})")
    for key in required:
        if key not in d:
            raise AnnotationError(f"{where}: missing key {key!r}")


def annotation_from_dict(doc: object, where: str = "annotation") -> Annotation:
    """Validate a parsed twostream annotation; every error names `where` and the culprit."""
    if not isinstance(doc, dict):
        raise AnnotationError(f"{where}: expected a JSON object with fps, frames, segments")
    _check_keys(doc, TOP_KEYS, ("fps", "frames", "segments"), where)
    fps = doc["fps"]
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (0 < fps <= 10000) or math.isnan(fps):
        raise AnnotationError(f"{where}: fps = {fps!r}: expected a number in (0, 10000]")
    frames = doc["frames"]
    if not _is_int(frames) or frames <= 0:
        raise AnnotationError(f"{where}: frames = {frames!r}: expected a positive integer")
    meta = doc.get("meta", {})
    if not isinstance(meta, dict):
        raise AnnotationError(f"{where}: meta must be an object, got {type(meta).__name__}")
    raw = doc["segments"]
    if not isinstance(raw, list):
        raise AnnotationError(f"{where}: segments must be a list")
    segments = []
    for i, s in enumerate(raw):
        name = f"{where}: segments[{i}]"
        if not isinstance(s, dict):
            raise AnnotationError(f"{name}: expected an object with label, start, end")
        _check_keys(s, SEGMENT_KEYS, ("label", "start", "end"), name)
        label, start, end, source = s["label"], s["start"], s["end"], s.get("source", "")
        if not isinstance(label, str) or not label.strip():
            raise AnnotationError(f"{name}: label must be a non-empty string, got {label!r}")
        if not _is_int(start) or not _is_int(end):
            raise AnnotationError(f"{name}: start and end must be integer frame indices, got {start!r}, {end!r}")
        if not (0 <= start < end <= frames):
            raise AnnotationError(f"{name} ({label!r} {start}..{end}): out of range, need 0 <= start < end <= "
                                  f"frames ({frames})")
        if not isinstance(source, str):
            raise AnnotationError(f"{name}: source must be a string, got {source!r}")
        segments.append((start, end, i, Segment(label=label, start=start, end=end, source=source)))
    segments.sort(key=lambda t: (t[0], t[1]))
    for (s0, e0, i0, a), (s1, e1, i1, b) in pairwise(segments):
        if s1 < e0:
            raise AnnotationError(f"{where}: segments[{i0}] ({a.label!r} {s0}..{e0}) and segments[{i1}] "
                                  f"({b.label!r} {s1}..{e1}) overlap")
    return Annotation(fps=float(fps), frames=frames, segments=tuple(t[3] for t in segments), meta=meta, path=where)


def _read_json(path: Path) -> object:
    if not path.is_file():
        raise AnnotationError(f"annotation file {str(path)!r} does not exist")
    if path.stat().st_size > MAX_ANNOTATION_BYTES:
        raise AnnotationError(f"{path}: larger than {MAX_ANNOTATION_BYTES // 2**20} MiB, not an annotation file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: not valid JSON ({exc})") from None


def load_annotation(path: str | Path) -> Annotation:
    """Read a twostream annotation JSON file."""
    path = Path(path)
    return annotation_from_dict(_read_json(path), where=str(path))


def save_annotation(annotation: Annotation, path: str | Path) -> None:
    path = Path(path)
    # Round-trip through the validator so a writer bug can never produce a file the reader rejects.
    annotation_from_dict(annotation.to_dict(), where=str(path))
    path.write_text(json.dumps(annotation.to_dict(), indent=1) + "\n", encoding="utf-8")


def annotation_for_video(video: str | Path) -> Path:
    """The conventional annotation path of a video: VIDEO.json beside it (clip.mp4 -> clip.json)."""
    return Path(video).with_suffix(".json")


def _seconds_to_segments(items: list[tuple[str, float, float, str]], fps: float, frames: int,
                         where: str) -> Annotation:
    """(label, start_s, end_s, what) -> validated Annotation; `what` names the item in errors."""
    if not (isinstance(fps, (int, float)) and fps > 0):
        raise AnnotationError(f"{where}: fps must be a positive number to convert seconds to frames, got {fps!r}")
    segments = []
    for label, start_s, end_s, what in items:
        if not (math.isfinite(start_s) and math.isfinite(end_s)) or end_s < start_s or start_s < 0:
            raise AnnotationError(f"{where}: {what}: bad time interval {start_s!r}..{end_s!r} seconds")
        start, end = min(round(start_s * fps), frames), min(round(end_s * fps), frames)
        if end > start:  # shorter than one frame after rounding: nothing to evaluate
            segments.append({"label": label, "start": start, "end": end, "_what": what})
    segments.sort(key=lambda d: d["start"])
    for a, b in pairwise(segments):
        if b["start"] < a["end"]:
            raise AnnotationError(f"{where}: {a['_what']} ({a['label']!r}) and {b['_what']} ({b['label']!r}) overlap "
                                  f"(frames {a['start']}..{a['end']} and {b['start']}..{b['end']} at {fps:g} fps)")
    for d in segments:
        del d["_what"]
    return annotation_from_dict({"fps": float(fps), "frames": frames, "segments": segments}, where=where)


def read_activitynet(path: str | Path, video: str, *, fps: float, frames: int | None = None) -> Annotation:
    """One video of an ActivityNet-style JSON file, converted to frames at `fps`.

    `frames` defaults to round(duration * fps) from the file's "duration" field.
    """
    path = Path(path)
    doc = _read_json(path)
    database = doc.get("database") if isinstance(doc, dict) else None
    if not isinstance(database, dict):
        raise AnnotationError(f"{path}: not an ActivityNet-style file (no \"database\" object)")
    entry = database.get(video)
    if entry is None and video.startswith("v_"):
        entry = database.get(video[2:])  # the videos are named v_ID, the database keys ID
    if not isinstance(entry, dict):
        raise AnnotationError(f"{path}: video {video!r} is not in the database ({len(database)} videos)")
    where = f"{path} [{video}]"
    anns = entry.get("annotations", [])
    if not isinstance(anns, list):
        raise AnnotationError(f"{where}: annotations must be a list")
    if frames is None:
        duration = entry.get("duration")
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration <= 0:
            raise AnnotationError(f"{where}: no usable \"duration\"; pass the frame count explicitly")
        frames = max(1, round(duration * fps))
    items = []
    for i, a in enumerate(anns):
        what = f"annotations[{i}]"
        seg = a.get("segment") if isinstance(a, dict) else None
        label = a.get("label") if isinstance(a, dict) else None
        if not (isinstance(seg, list) and len(seg) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                                for v in seg)):
            raise AnnotationError(f"{where}: {what}: segment must be [start_s, end_s], got {seg!r}")
        if not isinstance(label, str) or not label:
            raise AnnotationError(f"{where}: {what}: label must be a non-empty string, got {label!r}")
        items.append((label, float(seg[0]), float(seg[1]), what))
    return _seconds_to_segments(items, fps, frames, where)


def _thumos_label(path: Path) -> str:
    stem = path.stem
    for suffix in THUMOS_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def read_thumos(paths: str | Path | list, video: str, *, fps: float, frames: int,
                ignore_labels: tuple[str, ...] = ("Ambiguous",)) -> Annotation:
    """One video from THUMOS-style per-class files ("CLASS_val.txt": lines "VIDEO START_S END_S").

    `paths` is a directory (every *.txt in it) or a list of files. The class is the file name
    without _val/_test; THUMOS's "Ambiguous" file marks unclear spans, not an action, and is skipped.
    """
    if isinstance(paths, (str, Path)) and Path(paths).is_dir():
        files = sorted(Path(paths).glob("*.txt"))
        where = str(paths)
    else:
        files = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        where = ", ".join(map(str, files)) if len(files) <= 3 else f"{files[0].parent} ({len(files)} files)"
    if not files:
        raise AnnotationError(f"{where}: no THUMOS-style *.txt annotation files")
    items = []
    for f in files:
        if not f.is_file():
            raise AnnotationError(f"annotation file {str(f)!r} does not exist")
        label = _thumos_label(f)
        if label in ignore_labels:
            continue
        for n, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3:
                raise AnnotationError(f"{f}:{n}: expected 'VIDEO START END', got {line.strip()!r}")
            if parts[0] != video:
                continue
            try:
                start_s, end_s = float(parts[1]), float(parts[2])
            except ValueError:
                raise AnnotationError(f"{f}:{n}: start and end must be seconds, got {line.strip()!r}") from None
            items.append((label, start_s, end_s, f"{f.name}:{n}"))
    return _seconds_to_segments(items, fps, frames, f"{where} [{video}]")


def read_annotation(path: str | Path, *, video: str | None = None, fps: float | None = None,
                    frames: int | None = None) -> Annotation:
    """Any supported layout: twostream JSON, ActivityNet JSON (needs video, fps) or THUMOS txt/dir (video, fps,
    frames)."""
    path = Path(path)
    if path.is_dir() or path.suffix == ".txt":
        if video is None or fps is None or frames is None:
            raise AnnotationError(f"{path}: THUMOS-style annotations need the video id, fps and frame count")
        return read_thumos(path, video, fps=fps, frames=frames)
    doc = _read_json(path)
    if isinstance(doc, dict) and "database" in doc:
        if video is None or fps is None:
            raise AnnotationError(f"{path}: ActivityNet-style annotations need the video id and fps")
        return read_activitynet(path, video, fps=fps, frames=frames)
    return annotation_from_dict(doc, where=str(path))
