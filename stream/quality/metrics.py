"""Streaming-quality metrics: how well and how fast decided labels follow an annotated stream.

Input is what a subscriber sees: for each published window, the index of its newest frame
and the decided label (windows in publishing order, frame indices increasing), plus the
video's Annotation. Everything here is plain arithmetic on those sequences.

Definitions (the numbers in docs/streaming_quality.md mean exactly this):

* Window accuracy: over windows whose newest frame is annotated, the fraction whose decided
  label equals the annotation's label of that newest frame. A window's prediction is "about"
  the moment it is published, so lag after a change counts as error. Windows whose newest
  frame is unannotated are skipped. Per-class accuracy groups the windows by annotated label.
* Settled accuracy: window accuracy over the windows whose newest frame is at least
  settle_s (default 1 s) into its annotated run (a run starts at frame 0 or at an annotated
  change). Lag after a change lowers window accuracy and is measured by the switch delay;
  settled accuracy shows whether a policy loses accuracy *apart from* that lag.
* Switch delay: for each annotated change (a segment whose label differs from the previous
  segment's, starting at frame c and lasting until frame u), the first window with
  c <= frame < u whose decided label is the new label; delay = frame - c frames
  (= (frame - c) / fps seconds). If no such window exists the change is *missed* (counted
  separately, not in the delay statistics). Reported: mean, p90 (nearest rank: the smallest
  delay d such that at least 90% of the delays are <= d) and max.
* Flicker: a decided change is a window whose decided label differs from the previous
  window's. A decided change is *expected* when it is the window that ends a switch delay
  (the first window showing the new label after an annotated change, where the label
  actually changed at that window). Every other decided change is *spurious*. Flicker =
  spurious changes per minute of video (annotation frames / fps / 60). A model that is wrong
  but steady does not flicker; one that hops A->B->A inside a segment adds 2.
* "none": a decided label "none" (stream.core.policy: below the threshold, or the background
  class, which the runtime publishes as "none") is never an action. Annotated segments labelled
  "none" or "_background", and unannotated frames, are *background*. Window, settled and
  per-class accuracy count only windows whose newest frame is annotated with an action, so an
  action decided as "none" is a miss there. Over background windows: the none rate (fraction
  decided "none": correct) and false alarms, a window over background whose decided label is an
  action and differs from the previous window's (the first window: any action), i.e. each
  change event into an action that a subscriber would get while nothing known happens; false
  alarms per minute = false alarms / minutes of background frames. A change to a background
  segment is a switch to "none" like any other.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from itertools import pairwise

from stream.core.policy import NONE_LABEL, is_none
from stream.quality.annotations import Annotation


@dataclass(frozen=True)
class SwitchResult:
    frame: int  # annotated change frame
    previous: str
    to: str
    fps: float
    delay_frames: int | None  # None: missed (new label never decided before the next change)

    @property
    def delay_s(self) -> float | None:
        return None if self.delay_frames is None else self.delay_frames / self.fps


@dataclass
class StreamScore:
    """Raw counts for one or more videos; summarize() turns them into the reported numbers."""

    windows: int = 0  # windows with an annotated newest frame
    correct: int = 0
    settled_windows: int = 0  # ... at least settle_s into their annotated run
    settled_correct: int = 0
    per_class: dict[str, list[int]] = field(default_factory=dict)  # label -> [correct, windows]
    switches: list[SwitchResult] = field(default_factory=list)
    decided_changes: int = 0
    spurious_changes: int = 0
    minutes: float = 0.0
    background_windows: int = 0  # windows whose newest frame is background (unannotated, "none", "_background")
    background_none: int = 0  # ... decided "none" (correct)
    false_alarms: int = 0  # changes into an action over background (see the module docstring)
    background_minutes: float = 0.0  # minutes of background frames


def _check_sequences(frames, labels) -> None:
    if len(frames) != len(labels):
        raise ValueError(f"{len(frames)} frame indices but {len(labels)} labels")
    if any(b < a for a, b in pairwise(frames)):
        raise ValueError("window frame indices must be non-decreasing (publishing order)")


def action_at(annotation: Annotation, frame: int) -> str | None:
    """The annotated action of a frame; None for background (unannotated, "none" or "_background")."""
    truth = annotation.label_at(int(frame))
    return None if truth is None or is_none(truth) else truth


def _norm(label: str) -> str:
    """Decided labels: the background class counts as "none"."""
    return NONE_LABEL if is_none(label) else label


def window_accuracy(frames, labels, annotation: Annotation) -> tuple[int, int]:
    """(correct, counted) windows against the action annotated at each window's newest frame."""
    _check_sequences(frames, labels)
    correct = counted = 0
    for f, lab in zip(frames, labels, strict=True):
        truth = action_at(annotation, f)
        if truth is None:
            continue
        counted += 1
        correct += lab == truth
    return correct, counted


def per_class_accuracy(frames, labels, annotation: Annotation) -> dict[str, list[int]]:
    """Annotated label -> [correct, windows]."""
    _check_sequences(frames, labels)
    out: dict[str, list[int]] = {}
    for f, lab in zip(frames, labels, strict=True):
        truth = action_at(annotation, f)
        if truth is None:
            continue
        c = out.setdefault(truth, [0, 0])
        c[0] += lab == truth
        c[1] += 1
    return out


def settled_accuracy(frames, labels, annotation: Annotation, settle_s: float = 1.0) -> tuple[int, int]:
    """(correct, counted) over windows whose newest frame is >= settle_s into its annotated run."""
    _check_sequences(frames, labels)
    if not annotation.segments:
        return 0, 0
    run_starts = [annotation.segments[0].start] + [c.frame for c in annotation.changes()]
    settle = round(settle_s * annotation.fps)
    correct = counted = 0
    for f, lab in zip(frames, labels, strict=True):
        truth = action_at(annotation, f)
        if truth is None:
            continue
        start = run_starts[bisect.bisect_right(run_starts, int(f)) - 1]
        if f - start < settle:
            continue
        counted += 1
        correct += lab == truth
    return correct, counted


def _first_hits(frames, labels, annotation: Annotation) -> list[tuple[SwitchResult, int | None]]:
    """Each annotated change with the index of the window that ends its delay (None: missed)."""
    out = []
    for ch in annotation.changes():
        hit = None
        for i, (f, lab) in enumerate(zip(frames, labels, strict=True)):
            if f < ch.frame:
                continue
            if f >= ch.until:
                break
            if _norm(lab) == _norm(ch.to):
                hit = i
                break
        delay = None if hit is None else int(frames[hit]) - ch.frame
        out.append((SwitchResult(frame=ch.frame, previous=ch.previous, to=ch.to, fps=annotation.fps,
                                 delay_frames=delay), hit))
    return out


def switch_delays(frames, labels, annotation: Annotation) -> list[SwitchResult]:
    """One SwitchResult per annotated change (see the module docstring)."""
    _check_sequences(frames, labels)
    return [s for s, _ in _first_hits(frames, labels, annotation)]


def decided_changes(labels) -> list[int]:
    """Indices of windows whose decided label differs from the previous window's."""
    return [i for i in range(1, len(labels)) if labels[i] != labels[i - 1]]


def flicker(frames, labels, annotation: Annotation) -> tuple[int, int, float]:
    """(spurious changes, all decided changes, spurious changes per minute of video)."""
    _check_sequences(frames, labels)
    changes = decided_changes(labels)
    expected = {hit for _, hit in _first_hits(frames, labels, annotation) if hit is not None}
    spurious = sum(1 for i in changes if i not in expected)
    minutes = annotation.duration_s / 60.0
    return spurious, len(changes), spurious / minutes


def background_minutes(annotation: Annotation) -> float:
    """Minutes of background frames: unannotated or annotated "none" / "_background"."""
    action = sum(s.length for s in annotation.segments if not is_none(s.label))
    return max(0, annotation.frames - action) / annotation.fps / 60.0


def background(frames, labels, annotation: Annotation) -> tuple[int, int, int]:
    """(background windows, of them decided "none", false alarms) - see the module docstring."""
    _check_sequences(frames, labels)
    windows = nones = alarms = 0
    previous = None
    for f, lab in zip(frames, labels, strict=True):
        lab = _norm(lab)
        if action_at(annotation, f) is None:
            windows += 1
            if lab == NONE_LABEL:
                nones += 1
            elif lab != previous:
                alarms += 1
        previous = lab
    return windows, nones, alarms


def false_alarms_per_minute(labels, minutes: float) -> float:
    """False alarms per minute of a stream that is background throughout (e.g. footage of other activities)."""
    previous, alarms = None, 0
    for lab in labels:
        lab = _norm(lab)
        if lab != NONE_LABEL and lab != previous:
            alarms += 1
        previous = lab
    return alarms / minutes if minutes > 0 else 0.0


def score_stream(frames, labels, annotation: Annotation, settle_s: float = 1.0) -> StreamScore:
    """All raw counts for one video's published windows."""
    labels = [_norm(lab) for lab in labels]
    bg_windows, bg_none, alarms = background(frames, labels, annotation)
    correct, counted = window_accuracy(frames, labels, annotation)
    settled_correct, settled = settled_accuracy(frames, labels, annotation, settle_s)
    spurious, changes, _ = flicker(frames, labels, annotation)
    return StreamScore(windows=counted, correct=correct, settled_windows=settled, settled_correct=settled_correct,
                       per_class=per_class_accuracy(frames, labels, annotation),
                       switches=switch_delays(frames, labels, annotation), decided_changes=changes,
                       spurious_changes=spurious, minutes=annotation.duration_s / 60.0,
                       background_windows=bg_windows, background_none=bg_none, false_alarms=alarms,
                       background_minutes=background_minutes(annotation))


def merge_scores(scores: list[StreamScore]) -> StreamScore:
    """Pool several videos (counts add up; delays are pooled, not averaged per video)."""
    total = StreamScore()
    for s in scores:
        total.windows += s.windows
        total.correct += s.correct
        total.settled_windows += s.settled_windows
        total.settled_correct += s.settled_correct
        for label, (c, n) in s.per_class.items():
            acc = total.per_class.setdefault(label, [0, 0])
            acc[0] += c
            acc[1] += n
        total.switches.extend(s.switches)
        total.decided_changes += s.decided_changes
        total.spurious_changes += s.spurious_changes
        total.minutes += s.minutes
        total.background_windows += s.background_windows
        total.background_none += s.background_none
        total.false_alarms += s.false_alarms
        total.background_minutes += s.background_minutes
    return total


def p90(values: list[float]) -> float:
    """Nearest-rank 90th percentile: smallest value with at least 90% of the values <= it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def _stats(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "p90": None, "max": None}
    return {"mean": sum(values) / len(values), "p90": p90(values), "max": max(values)}


def summarize(score: StreamScore) -> dict:
    """The reported numbers (JSON-ready)."""
    delays_f = [s.delay_frames for s in score.switches if s.delay_frames is not None]
    delays_s = [s.delay_s for s in score.switches if s.delay_s is not None]
    return {
        "windows": score.windows,
        "window_accuracy": score.correct / score.windows if score.windows else None,
        "settled_accuracy": score.settled_correct / score.settled_windows if score.settled_windows else None,
        "per_class_accuracy": {label: {"accuracy": c / n if n else None, "windows": n}
                               for label, (c, n) in sorted(score.per_class.items())},
        "switches": len(score.switches),
        "missed_switches": sum(1 for s in score.switches if s.delay_frames is None),
        "switch_delay_frames": _stats([float(d) for d in delays_f]),
        "switch_delay_s": _stats(delays_s),
        "decided_changes": score.decided_changes,
        "spurious_changes": score.spurious_changes,
        "minutes": score.minutes,
        "flicker_per_min": score.spurious_changes / score.minutes if score.minutes else None,
        "background_windows": score.background_windows,
        "background_none_rate": score.background_none / score.background_windows if score.background_windows else None,
        "false_alarms": score.false_alarms,
        "background_minutes": score.background_minutes,
        "false_alarms_per_min": score.false_alarms / score.background_minutes if score.background_minutes else None,
    }
