"""Development streams: labelled clips of one group stitched into a continuous, annotated video.

A clip dataset is DATA/CLASS/*.mp4 (the layout of ../shared/data/weizmann4 and k400tiny2).
A *group* is a set of clips that can plausibly follow each other in one camera's view:

* If every clip is named GROUP_CLASS.mp4 (weizmann4: actor0_bend.mp4), the group is the
  name prefix: one actor, one background, one camera - only the action changes at a switch.
* Otherwise (k400tiny2: typing12.mp4, each clip from a different YouTube video) there is no
  such group. Clips are dealt out instead: within each class, clips are sorted by name (numbers
  numerically) and group gNN takes the NN-th clip of every class, so there are as many groups
  as the smallest class has clips. Every switch then also cuts to another scene and camera,
  which the spatial stream can follow from appearance alone: these streams measure the
  whole system on in-the-wild video, not a single camera.

A stream plays `rounds` rounds; each round is a random order of the group's clips (one per
class), never repeating the label across a round boundary. Each segment is the clip played
once (seconds_per_action = 0) or looped/cut to round(seconds_per_action * fps) frames, starting
at a different offset in every round. All clips are written at the first clip's size and fps
(other sizes are squashed, as the runtime squashes anyway).

`handheld` simulates a cheap handheld camera: a smooth random pan, rotation and zoom (low-pass
filtered random walk) plus a faster small shake, applied with warpAffine; Gaussian sensor
noise; and a strong JPEG round trip on every frame before the (lossy) mp4v encode.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from stream.core.errors import SourceError
from stream.core.offline import iter_frames, open_video
from stream.quality.annotations import Annotation, Segment, save_annotation
from train.datasets import natural_key

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


@dataclass(frozen=True)
class Clip:
    path: Path
    label: str
    group: str


@dataclass(frozen=True)
class HandheldSettings:
    pan: float = 0.05  # std of the smooth pan, fraction of width/height
    shake: float = 0.012  # std of the fast shake, fraction of width/height
    rotation: float = 2.0  # std of the rotation, degrees
    zoom: float = 0.05  # std of the zoom around `zoom_base`
    zoom_base: float = 1.08  # mean zoom (> 1 keeps most borders outside the view)
    smooth_s: float = 0.6  # time scale of pan/zoom/rotation, seconds
    shake_frames: float = 1.5  # time scale of the shake, frames
    noise: float = 5.0  # sensor noise std, pixel levels
    jpeg_quality: int = 15  # per-frame JPEG round trip (strong compression)


@dataclass
class SequenceResult:
    video: Path
    annotation: Path
    frames: int
    segments: list[Segment] = field(default_factory=list)


def find_clips(data: str | Path) -> list[Clip]:
    """Clips of DATA/CLASS/*.mp4 with their group (see the module docstring)."""
    data = Path(data)
    if not data.is_dir():
        raise SourceError(f"{data}: not a directory of class folders")
    by_class: dict[str, list[Path]] = {}
    for class_dir in sorted(p for p in data.iterdir() if p.is_dir()):
        videos = sorted((p for p in class_dir.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES),
                        key=lambda p: natural_key(p.name))
        if videos:
            by_class[class_dir.name] = videos
    if len(by_class) < 2:
        raise SourceError(f"{data}: need at least two class folders with videos to make switching streams, "
                          f"found {len(by_class)}")
    named = all(p.stem.endswith("_" + label) and len(p.stem) > len(label) + 1
                for label, paths in by_class.items() for p in paths)
    clips = []
    if named:
        for label, paths in by_class.items():
            clips += [Clip(path=p, label=label, group=p.stem[: -len(label) - 1]) for p in paths]
    else:
        n = min(len(paths) for paths in by_class.values())
        for label, paths in by_class.items():
            clips += [Clip(path=p, label=label, group=f"g{i:02d}") for i, p in enumerate(paths[:n])]
    return clips


def group_clips(clips: list[Clip]) -> dict[str, list[Clip]]:
    """Group name -> its clips (sorted by label); groups with fewer than two labels are dropped."""
    groups: dict[str, list[Clip]] = {}
    for c in clips:
        groups.setdefault(c.group, []).append(c)
    return {g: sorted(cs, key=lambda c: c.label) for g, cs in sorted(groups.items(), key=lambda t: natural_key(t[0]))
            if len({c.label for c in cs}) >= 2}


def read_clip(path: Path) -> tuple[list[np.ndarray], float]:
    """All BGR frames of a clip and its fps."""
    cap = open_video(path)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = list(iter_frames(cap))
    if not frames:
        raise SourceError(f"{path}: no frame could be decoded")
    return frames, float(fps)


def plan_order(clips: list[Clip], rounds: int, rng: np.random.Generator) -> list[Clip]:
    """`rounds` random orders of the clips, without the same label twice in a row."""
    order: list[Clip] = []
    for _ in range(rounds):
        for _attempt in range(100):
            perm = [clips[i] for i in rng.permutation(len(clips))]
            if not order or perm[0].label != order[-1].label:
                break
        order += perm
    return order


def _smooth_noise(n: int, sigma_frames: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-std low-pass random signal of length n (Gaussian-filtered white noise)."""
    pad = int(4 * sigma_frames) + 1
    white = rng.standard_normal(n + 2 * pad)
    t = np.arange(-pad, pad + 1)
    kernel = np.exp(-0.5 * (t / max(sigma_frames, 1e-3)) ** 2)
    smooth = np.convolve(white, kernel / kernel.sum(), mode="same")[pad: pad + n]
    std = smooth.std()
    return smooth / std if std > 0 else smooth


def camera_trajectory(n: int, fps: float, settings: HandheldSettings, rng: np.random.Generator) -> np.ndarray:
    """(n, 4): dx, dy (fractions of width/height), rotation (degrees), zoom for each frame."""
    slow = settings.smooth_s * fps
    dx = settings.pan * _smooth_noise(n, slow, rng) + settings.shake * _smooth_noise(n, settings.shake_frames, rng)
    dy = settings.pan * _smooth_noise(n, slow, rng) + settings.shake * _smooth_noise(n, settings.shake_frames, rng)
    rot = settings.rotation * _smooth_noise(n, slow, rng)
    zoom = settings.zoom_base + settings.zoom * _smooth_noise(n, slow, rng)
    return np.stack([dx, dy, rot, np.maximum(zoom, 0.9)], axis=1)


def handheld_frame(frame: np.ndarray, pose: np.ndarray, settings: HandheldSettings,
                   rng: np.random.Generator) -> np.ndarray:
    """Apply one pose (dx, dy, rotation, zoom), sensor noise and a JPEG round trip to a BGR frame."""
    h, w = frame.shape[:2]
    dx, dy, rot, zoom = pose
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), float(rot), float(zoom))
    m[0, 2] += dx * w
    m[1, 2] += dy * h
    out = cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    if settings.noise > 0:
        noisy = out.astype(np.float32) + rng.normal(0.0, settings.noise, out.shape).astype(np.float32)
        out = np.clip(noisy, 0, 255).astype(np.uint8)
    if settings.jpeg_quality < 100:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(settings.jpeg_quality)])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


def make_sequence(clips: list[Clip], out_video: Path, *, data_root: Path, rounds: int = 2,
                  seconds_per_action: float = 0.0, handheld: HandheldSettings | None = None,
                  seed: int = 0, group: str = "") -> SequenceResult:
    """Stitch one group's clips into out_video (mp4v) and write out_video.json beside it."""
    rng = np.random.default_rng(seed)
    order = plan_order(clips, rounds, rng)
    cache: dict[Path, tuple[list[np.ndarray], float]] = {}
    first_frames, fps = read_clip(order[0].path)
    cache[order[0].path] = (first_frames, fps)
    h, w = first_frames[0].shape[:2]
    segments: list[Segment] = []
    plays: dict[Path, int] = {}
    stream_frames: list[np.ndarray] = []
    for clip in order:
        if clip.path not in cache:
            cache[clip.path] = read_clip(clip.path)
        frames = cache[clip.path][0]
        if seconds_per_action > 0:
            length = max(1, round(seconds_per_action * fps))
            # A new offset each round, so a repeated clip shows other moments of the action.
            offset = (plays.get(clip.path, 0) * length) % len(frames)
            picked = [frames[(offset + i) % len(frames)] for i in range(length)]
        else:
            picked = frames
        plays[clip.path] = plays.get(clip.path, 0) + 1
        start = len(stream_frames)
        for f in picked:
            stream_frames.append(f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA))
        try:
            source = str(clip.path.relative_to(data_root))
        except ValueError:
            source = clip.path.name
        segments.append(Segment(label=clip.label, start=start, end=len(stream_frames), source=source))
    if handheld is not None:
        camera_rng = np.random.default_rng([seed, 1])  # separate stream: the clip order stays as without handheld
        poses = camera_trajectory(len(stream_frames), fps, handheld, camera_rng)
        stream_frames = [handheld_frame(f, p, handheld, camera_rng) for f, p in zip(stream_frames, poses, strict=True)]

    out_video.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out_video), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise SourceError(f"{out_video}: OpenCV cannot write mp4v video here")
    try:
        for f in stream_frames:
            writer.write(f)
    finally:
        writer.release()
    annotation = Annotation(fps=fps, frames=len(stream_frames), segments=tuple(segments), meta={
        "made_by": "twostream make-sequences", "dataset": data_root.name, "group": group, "seed": seed,
        "rounds": rounds, "seconds_per_action": seconds_per_action, "handheld": handheld is not None})
    ann_path = out_video.with_suffix(".json")
    save_annotation(annotation, ann_path)
    return SequenceResult(video=out_video, annotation=ann_path, frames=len(stream_frames), segments=list(segments))


def make_sequences(data: str | Path, out: str | Path, *, rounds: int = 2, seconds_per_action: float = 0.0,
                   handheld: bool = False, seed: int = 0, groups: list[str] | None = None,
                   progress: bool = True) -> list[SequenceResult]:
    """One annotated stream per group of DATA into OUT (DATASET_GROUP[_handheld].mp4 + .json)."""
    data, out = Path(data), Path(out)
    by_group = group_clips(find_clips(data))
    if groups:
        missing = [g for g in groups if g not in by_group]
        if missing:
            raise SourceError(f"{data}: no group(s) {', '.join(missing)} (groups: {', '.join(by_group)})")
        by_group = {g: by_group[g] for g in groups}
    settings = HandheldSettings() if handheld else None
    suffix = "_handheld" if handheld else ""
    items = list(by_group.items())
    if progress:
        from tqdm import tqdm  # train extra; only for the bar
        items = tqdm(items, desc=f"make-sequences {data.name}", unit="stream")
    results = []
    for group, clips in items:
        # Seed per group name: a group's stream does not depend on which other groups are made, and its
        # clean and handheld versions have the same clip order and segments (handheld adds the camera only).
        group_seed = int(np.random.SeedSequence([seed, zlib.crc32(group.encode())]).generate_state(1)[0])
        results.append(make_sequence(clips, out / f"{data.name}_{group}{suffix}.mp4", data_root=data,
                                     rounds=rounds, seconds_per_action=seconds_per_action, handheld=settings,
                                     seed=group_seed, group=group))
    return results
