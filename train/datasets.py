"""Labelled video datasets and their train/validation splits.

Layouts: a folder per class of videos (also how UCF101 and HMDB51 unpack), with the split
taken from UCF101 lists (classInd.txt, trainlist0N.txt, testlist0N.txt), HMDB51 lists
(<class>_test_splitN.txt, 1 = train, 2 = test, 0 = unused), groups (a regex pulls a group id
such as an actor out of each file name; no group is ever in both subsets), a seeded random
fraction, or "all" (everything is training data, e.g. for the shipped model).
Random splits first group near-duplicate clips (near_duplicate_groups: perceptual hashes of
sampled frames), so copies of one clip never sit on both sides; --no-group-duplicates turns it off.
No torch here: `twostream eval` and `twostream extract` use this module too.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from stream.core.errors import ConfigError

if TYPE_CHECKING:  # numpy and cv2 are imported inside the functions that use them (the CLI starts light)
    import numpy as np

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v")
SPLIT_KINDS = ("all", "group", "random", "ucf101", "hmdb51")


@dataclass(frozen=True)
class VideoItem:
    rel: str  # path relative to the dataset root, "class/name.ext" (forward slashes)
    label: int


@dataclass
class Dataset:
    root: Path
    classes: list[str]
    items: list[VideoItem]


@dataclass
class Split:
    classes: list[str]
    train: list[VideoItem]
    val: list[VideoItem]
    description: str  # goes into logs and bundle provenance
    groups: dict[str, list[str]] = field(default_factory=dict)  # "train"/"val" -> group ids (group splits)


@dataclass(frozen=True)
class SplitSpec:
    """How to split; built from command-line options (see add_split_arguments)."""

    kind: str = "all"
    number: int = 1  # UCF101/HMDB51 split 1..3
    annotations: Path | None = None  # folder with the split files
    group_regex: str = ""
    val_groups: tuple[str, ...] = ()
    val_fraction: float = 0.25
    seed: int = 0
    folds: int = 0  # >1: cross-validation, validation = fold `fold` of `folds` disjoint parts
    fold: int = 0
    group_duplicates: bool = True  # random splits: near-duplicate clips stay together (near_duplicate_groups)


def scan_folder_per_class(root: str | Path) -> Dataset:
    """Every video under root/<class>/ (one level); classes sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"dataset {str(root)!r} is not a directory")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    items = []
    for label, name in enumerate(classes):
        for video in sorted((root / name).iterdir()):
            if video.is_file() and video.suffix.lower() in VIDEO_EXTENSIONS:
                items.append(VideoItem(rel=f"{name}/{video.name}", label=label))
    classes_with_videos = {it.label for it in items}
    if not items:
        raise ConfigError(f"dataset {root}: no videos found in class folders (expected {root}/<class>/<video>)")
    empty = [c for i, c in enumerate(classes) if i not in classes_with_videos]
    if empty:
        raise ConfigError(f"dataset {root}: class folder(s) without videos: {', '.join(empty[:5])}")
    return Dataset(root=root, classes=classes, items=items)


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise ConfigError(f"split file {path} does not exist")
    return [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]


def read_ucf101_split(annotations: str | Path, number: int) -> tuple[list[str], set[str], set[str]]:
    """(classes in classInd order, train rel paths, test rel paths) from UCF101's ucfTrainTestlist files."""
    ann = Path(annotations)
    classes = []
    for i, line in enumerate(_read_lines(ann / "classInd.txt"), 1):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ConfigError(f"{ann / 'classInd.txt'} line {i}: expected 'INDEX CLASSNAME', got {line!r}")
        if int(parts[0]) != len(classes) + 1:
            raise ConfigError(f"{ann / 'classInd.txt'} line {i}: indices must run 1, 2, 3, ... (got {parts[0]})")
        classes.append(parts[1])
    train = {line.split()[0].replace("\\", "/") for line in _read_lines(ann / f"trainlist0{number}.txt")}
    test = {line.split()[0].replace("\\", "/") for line in _read_lines(ann / f"testlist0{number}.txt")}
    return classes, train, test


def read_hmdb51_split(annotations: str | Path, number: int, classes: list[str]) -> tuple[set[str], set[str]]:
    """(train rel paths, test rel paths) from HMDB51's <class>_test_split<N>.txt files (1 train, 2 test, 0 unused)."""
    ann = Path(annotations)
    train, test = set(), set()
    for name in classes:
        path = ann / f"{name}_test_split{number}.txt"
        for i, line in enumerate(_read_lines(path), 1):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise ConfigError(f"{path} line {i}: expected 'VIDEO FLAG' with FLAG 0, 1 or 2, got {line!r}")
            rel = f"{name}/{parts[0]}"
            if parts[1] == "1":
                train.add(rel)
            elif parts[1] == "2":
                test.add(rel)
    return train, test


def group_of(rel: str, regex: re.Pattern) -> str:
    """The group id of one video: the regex's first group (or whole match) on the file name."""
    name = rel.rsplit("/", 1)[-1]
    m = regex.search(name)
    if not m:
        raise ConfigError(f"group regex {regex.pattern!r} does not match video {rel!r}")
    return m.group(1) if m.groups() else m.group(0)


def group_split(items: list[VideoItem], regex: str, val_groups: tuple[str, ...] = (), val_fraction: float = 0.25,
                seed: int = 0, folds: int = 0,
                fold: int = 0) -> tuple[list[VideoItem], list[VideoItem], list[str], list[str]]:
    """Split by group id: the listed val groups, fold `fold` of `folds` seeded disjoint group sets, or a seeded
    fraction of groups go to validation, whole."""
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise ConfigError(f"group regex {regex!r} is not a valid regular expression: {exc}") from None
    groups = {it.rel: group_of(it.rel, pattern) for it in items}
    all_groups = sorted(set(groups.values()), key=natural_key)
    if val_groups:
        unknown = [g for g in val_groups if g not in all_groups]
        if unknown:
            raise ConfigError(f"validation group(s) {', '.join(unknown)} not found; groups are {', '.join(all_groups)}")
        val_set = set(val_groups)
    elif folds > 1:
        if len(all_groups) < folds:
            raise ConfigError(f"{folds} folds need at least {folds} groups; regex {regex!r} finds {len(all_groups)}")
        shuffled = list(all_groups)
        random.Random(seed).shuffle(shuffled)
        val_set = set(shuffled[fold::folds])
    else:
        if len(all_groups) < 2:
            raise ConfigError(f"group regex {regex!r} finds only {len(all_groups)} group; cannot split by group")
        shuffled = list(all_groups)
        random.Random(seed).shuffle(shuffled)
        n_val = min(len(shuffled) - 1, max(1, round(val_fraction * len(shuffled))))
        val_set = set(shuffled[:n_val])
    train = [it for it in items if groups[it.rel] not in val_set]
    val = [it for it in items if groups[it.rel] in val_set]
    return train, val, [g for g in all_groups if g not in val_set], [g for g in all_groups if g in val_set]


def natural_key(s: str) -> list:
    """Sort key that orders digit runs by value: actor2 < actor10 (file and group names)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


# Perceptual hash: 64x64 grey frame, DCT, the 16x16 lowest frequencies but DC (255 bits) above their median.
# Measured on the shared sets (8 frames from the first 150 of each clip; per pair, the median over one
# clip's frames of the distance to the nearest frame of the other, as a fraction of 255 bits):
# k400tiny2 typing2 / typing28 0.039; the next k400tiny2 pair 0.376; weizmann4's closest pair (one actor,
# wave1 / wave2, same background) 0.200. With 8x8 (63 bits) weizmann4 pairs of different actors on the
# shared background came within 0.08, too close to call; 0.1 leaves margin on both sides.
HASH_SIDE = 16
NEAR_DUPLICATE_DISTANCE = 0.1
FINGERPRINT_FRAMES = 8
FINGERPRINT_MAX_FRAMES = 150


def frame_hash(frame) -> np.ndarray:
    """255-bit DCT perceptual hash (bool array) of one BGR (or grey) frame of any size."""
    import cv2
    import numpy as np

    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    small = cv2.resize(grey, (4 * HASH_SIDE, 4 * HASH_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:HASH_SIDE, :HASH_SIDE].flatten()[1:]
    return low > np.median(low)


def video_fingerprint(path: str | Path, frames: int = FINGERPRINT_FRAMES,
                      max_frames: int = FINGERPRINT_MAX_FRAMES) -> np.ndarray:
    """(n, 255) bool: hashes of `frames` evenly spaced frames among the first `max_frames` of a video.

    Skipped frames are only grabbed, not converted (about 10 s for the 64 k400tiny2 clips on the shared CPU).
    """
    import cv2
    import numpy as np

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ConfigError(f"{path}: cannot be opened to look for near-duplicates "
                              f"(--no-group-duplicates skips this)")
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        total = min(total, max_frames) if total > 0 else max_frames
        want = set(np.linspace(0, total - 1, frames).round().astype(int).tolist())
        hashes = []
        for i in range(max(want) + 1):
            if i in want:
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                hashes.append(frame_hash(frame))
            elif not cap.grab():
                break
    finally:
        cap.release()
    if not hashes:
        raise ConfigError(f"{path}: no frame decoded to look for near-duplicates (--no-group-duplicates skips this)")
    return np.stack(hashes)


def fingerprint_distance(a, b) -> float:
    """How far apart two clips look, 0..1: the median over one clip's frames of the (bit fraction) distance to
    the other's nearest frame, taken in the closer direction (a trimmed copy is near its source)."""
    import numpy as np

    d = (a[:, None, :] != b[None, :, :]).mean(axis=-1)
    return float(min(np.median(d.min(axis=1)), np.median(d.min(axis=0))))


def near_duplicate_groups(videos, *, max_distance: float = NEAR_DUPLICATE_DISTANCE,
                          frames: int = FINGERPRINT_FRAMES, max_frames: int = FINGERPRINT_MAX_FRAMES) -> list[int]:
    """Group ids (0, 1, 2, ... in order of first member) such that near-duplicate videos share one.

    videos: video paths, or fingerprints from video_fingerprint. Near-duplicates are pairs within
    max_distance (fingerprint_distance); groups are their transitive closure (union-find).
    """
    prints = [v if hasattr(v, "ndim") else video_fingerprint(v, frames, max_frames) for v in videos]
    parent = list(range(len(prints)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(prints)):
        for j in range(i + 1, len(prints)):
            if find(i) != find(j) and fingerprint_distance(prints[i], prints[j]) <= max_distance:
                parent[max(find(i), find(j))] = min(find(i), find(j))
    ids: dict[int, int] = {}
    return [ids.setdefault(find(i), len(ids)) for i in range(len(prints))]


def random_split(items: list[VideoItem], val_fraction: float, seed: int, folds: int = 0,
                 fold: int = 0, groups: list[int] | None = None) -> tuple[list[VideoItem], list[VideoItem]]:
    """Seeded split stratified by class: each class contributes about val_fraction of its videos
    (or, with folds > 1, every folds-th video of its seeded shuffle starting at `fold`: disjoint folds).

    groups (one id per item, e.g. near_duplicate_groups): items sharing an id move together, placed
    where the first of them falls in the shuffle, in the class of that first one. Without groups (or
    with all ids distinct) the split is the plain per-video one.
    """
    if folds <= 1 and not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val fraction must be in (0, 1), got {val_fraction}")
    if groups is not None and len(groups) != len(items):
        raise ValueError(f"{len(groups)} group ids for {len(items)} items")
    group_of = {it.rel: (groups[i] if groups is not None else i) for i, it in enumerate(items)}
    members_of: dict[int, list[VideoItem]] = {}
    for it in items:
        members_of.setdefault(group_of[it.rel], []).append(it)
    rng = random.Random(seed)
    train, val = [], []
    placed: set[int] = set()
    for label in sorted({it.label for it in items}):
        members = [it for it in items if it.label == label]
        rng.shuffle(members)
        units = []  # one per group, at its first member's place
        for m in members:
            g = group_of[m.rel]
            if g not in placed:
                placed.add(g)
                units.append(members_of[g])
        if folds > 1:
            val += [m for i, u in enumerate(units) if i % folds == fold for m in u]
            train += [m for i, u in enumerate(units) if i % folds != fold for m in u]
            continue
        n_val = max(1, round(val_fraction * len(units))) if len(units) > 1 else 0
        val += [m for u in units[:n_val] for m in u]
        train += [m for u in units[n_val:] for m in u]
    return sorted(train, key=lambda it: it.rel), sorted(val, key=lambda it: it.rel)


def make_split(dataset: Dataset, spec: SplitSpec) -> Split:
    """Apply a SplitSpec to a scanned dataset."""
    items = dataset.items
    if spec.folds > 1 and not 0 <= spec.fold < spec.folds:
        raise ConfigError(f"--fold {spec.fold}: expected 0..{spec.folds - 1} for --folds {spec.folds}")
    if spec.kind == "all":
        return Split(dataset.classes, list(items), [], "all videos for training (no validation)")
    if spec.kind == "group":
        if not spec.group_regex:
            raise ConfigError("--split group needs --group-regex (e.g. 'actor(\\d+)' or '_g(\\d+)_')")
        train, val, tg, vg = group_split(items, spec.group_regex, spec.val_groups, spec.val_fraction, spec.seed,
                                         spec.folds, spec.fold)
        desc = f"group split regex={spec.group_regex!r} val_groups={','.join(vg)}"
        return Split(dataset.classes, train, val, desc, groups={"train": tg, "val": vg})
    if spec.kind == "random":
        groups = near_duplicate_groups([dataset.root / it.rel for it in items]) if spec.group_duplicates else None
        train, val = random_split(items, spec.val_fraction, spec.seed, spec.folds, spec.fold, groups=groups)
        how = f"fold {spec.fold} of {spec.folds}" if spec.folds > 1 else f"val_fraction={spec.val_fraction}"
        desc = f"random stratified split {how} seed={spec.seed}"
        if groups is not None:
            desc += f", near-duplicates grouped ({len(items) - len(set(groups))} clip(s) joined another)"
        return Split(dataset.classes, train, val, desc)
    if spec.kind in ("ucf101", "hmdb51"):
        if spec.annotations is None:
            raise ConfigError(f"--split {spec.kind} needs --annotations DIR (the folder with the split files)")
        if spec.kind == "ucf101":
            classes, train_rel, test_rel = read_ucf101_split(spec.annotations, spec.number)
            if sorted(classes) != sorted(dataset.classes):
                missing = sorted(set(classes) - set(dataset.classes))[:5]
                raise ConfigError(f"classInd.txt classes do not match the class folders (e.g. missing {missing})")
            order = {c: i for i, c in enumerate(classes)}
            relabel = {i: order[c] for i, c in enumerate(dataset.classes)}
            items = [VideoItem(it.rel, relabel[it.label]) for it in items]
        else:
            classes = dataset.classes
            train_rel, test_rel = read_hmdb51_split(spec.annotations, spec.number, classes)
        by_rel = {it.rel: it for it in items}
        listed = train_rel | test_rel
        absent = sorted(r for r in listed if r not in by_rel)
        if absent:
            raise ConfigError(f"{len(absent)} video(s) in the {spec.kind} split files are not in {dataset.root} "
                              f"(first: {absent[0]})")
        overlap = train_rel & test_rel
        if overlap:
            raise ConfigError(f"{len(overlap)} video(s) are in both train and test lists (first: {sorted(overlap)[0]})")
        train = [by_rel[r] for r in sorted(train_rel)]
        val = [by_rel[r] for r in sorted(test_rel)]
        return Split(classes, train, val, f"{spec.kind} split {spec.number} from {spec.annotations}")
    raise ConfigError(f"--split {spec.kind!r}: expected one of {', '.join(SPLIT_KINDS)}")


def add_split_arguments(parser) -> None:
    """The split options shared by `twostream train` and `twostream eval`."""
    g = parser.add_argument_group("split")
    g.add_argument("--split", choices=SPLIT_KINDS, default="all",
                   help="how to split train/validation (default: all = train on everything)")
    g.add_argument("--split-number", type=int, default=1, choices=(1, 2, 3), help="UCF101/HMDB51 split number")
    g.add_argument("--annotations", type=Path, help="folder with UCF101/HMDB51 split files")
    g.add_argument("--group-regex", default="",
                   help=r"regex extracting a group id from the file name, e.g. 'actor(\d+)'")
    g.add_argument("--val-groups", default="", help="comma-separated group ids for validation (group split)")
    g.add_argument("--val-fraction", type=float, default=0.25,
                   help="fraction for random/group splits without --val-groups")
    g.add_argument("--split-seed", type=int, default=0, help="seed of random/group splits")
    g.add_argument("--folds", type=int, default=0, help="cross-validation: number of disjoint folds (random/group)")
    g.add_argument("--fold", type=int, default=0, help="cross-validation: which fold is validation (0-based)")
    g.add_argument("--no-group-duplicates", dest="group_duplicates", action="store_false",
                   help="random split: do not keep near-duplicate clips (perceptual hash) on one side")


def split_spec_from_args(args) -> SplitSpec:
    return SplitSpec(kind=args.split, number=args.split_number, annotations=args.annotations,
                     group_regex=args.group_regex,
                     val_groups=tuple(g.strip() for g in args.val_groups.split(",") if g.strip()),
                     val_fraction=args.val_fraction, seed=args.split_seed, folds=args.folds, fold=args.fold,
                     group_duplicates=getattr(args, "group_duplicates", True))
