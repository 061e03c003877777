"""Labelled video datasets and their train/validation splits.

Layouts: a folder per class of videos (also how UCF101 and HMDB51 unpack), with the split
taken from UCF101 lists (classInd.txt, trainlist0N.txt, testlist0N.txt), HMDB51 lists
(<class>_test_splitN.txt, 1 = train, 2 = test, 0 = unused), groups (a regex pulls a group id
such as an actor out of each file name; no group is ever in both subsets), a seeded random
fraction, or "all" (everything is training data, e.g. for the shipped model).
No torch here: `twostream eval` and `twostream extract` use this module too.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from stream.core.errors import ConfigError

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
    all_groups = sorted(set(groups.values()), key=_natural_key)
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


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def random_split(items: list[VideoItem], val_fraction: float, seed: int, folds: int = 0,
                 fold: int = 0) -> tuple[list[VideoItem], list[VideoItem]]:
    """Seeded split stratified by class: each class contributes about val_fraction of its videos
    (or, with folds > 1, every folds-th video of its seeded shuffle starting at `fold`: disjoint folds)."""
    if folds <= 1 and not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val fraction must be in (0, 1), got {val_fraction}")
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted({it.label for it in items}):
        members = [it for it in items if it.label == label]
        rng.shuffle(members)
        if folds > 1:
            val += members[fold::folds]
            train += [m for i, m in enumerate(members) if i % folds != fold]
            continue
        n_val = max(1, round(val_fraction * len(members))) if len(members) > 1 else 0
        val += members[:n_val]
        train += members[n_val:]
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
        train, val = random_split(items, spec.val_fraction, spec.seed, spec.folds, spec.fold)
        how = f"fold {spec.fold} of {spec.folds}" if spec.folds > 1 else f"val_fraction={spec.val_fraction}"
        return Split(dataset.classes, train, val, f"random stratified split {how} seed={spec.seed}")
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


def split_spec_from_args(args) -> SplitSpec:
    return SplitSpec(kind=args.split, number=args.split_number, annotations=args.annotations,
                     group_regex=args.group_regex,
                     val_groups=tuple(g.strip() for g in args.val_groups.split(",") if g.strip()),
                     val_fraction=args.val_fraction, seed=args.split_seed, folds=args.folds, fold=args.fold)
