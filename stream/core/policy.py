"""Decision policies: turn the stream of per-window fused scores into a decided label (pure numpy).

The runtime keeps one policy object per source and calls update(scores) once per window,
in window order. The Decision says which label is decided now and whether that is a change,
so the publisher can emit change events without re-implementing the policy.

Policies ([policy] kind):
  none        the label is the argmax of the window's fused scores (most responsive, may flicker).
  ema         exponential moving average of the scores, s = alpha * x + (1 - alpha) * s_prev; argmax of s.
  vote        majority of the argmax labels of the last vote_k windows; a tie keeps the current label
              (and a tie without it goes to the most recent of the tied labels). Decision.scores is the
              mean of those windows' scores. After an abrupt change the new label wins at window
              floor(vote_k / 2) + 1.
  hysteresis  the label changes only when another label leads the current one by at least `margin`
              (in score units, e.g. softmax probability) for `hold` consecutive windows, the same
              label each time. Scores are used as given (no smoothing).

The first window of a stream (and the first after reset()) is decided from that window alone.
Change semantics: Decision.changed is True exactly when the decided label differs from the
previously decided label; the first decision of a stream is a change from None (so a
subscriber learns the initial state). reset() forgets the score history (call it after a gap
in the source) but keeps the last decided label, so a gap alone never produces a change.

"none" (nothing known is happening), applied after every kind above, to the label it picked:
  min_score   the label's (smoothed) score must be >= min_score, else the decision is NONE
  min_margin  it must lead the best other class by >= min_margin, else NONE
  background  a class of that name (default "_background") is decided as NONE
Decision.label is then NONE (-1) and Decision.name(labels) is "none"; changes to and from
NONE are changes like any other. The smoothing state keeps following the classes, so a
threshold never changes which class a policy would pick, only whether it is published.
Thresholds at 0 and no background class: exactly the behaviour without this step.

A model bundle's [policy] (min_score, min_margin, background: written by `twostream fit`) is
the default for these three keys: in the config, min_score/min_margin < 0 (the default, -1) and
background = "" mean "the bundle's value" (0, 0, "_background" when the bundle has none), the
same convention as [fusion]'s weights; any other value set in the config wins (resolve()).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, fields

import numpy as np

from stream.core.setting import check_setting
from stream.core.setting import setting as _opt

KINDS = ("none", "ema", "vote", "hysteresis")
NONE = -1  # Decision.label when nothing known is happening
NONE_LABEL = "none"  # what is published for NONE
BACKGROUND_LABEL = "_background"  # the default name of an explicit "other activity" class
BUNDLE_KEYS = ("min_score", "min_margin", "background")  # what a bundle's [policy] may set


@dataclass(frozen=True)
class PolicySettings:
    """[policy] section of config.toml."""

    kind: str = _opt("ema", choices=KINDS)
    ema_alpha: float = _opt(0.5, lo=0.01, hi=1.0)  # weight of the newest window
    vote_k: int = _opt(5, lo=1, hi=1000)  # windows in the vote
    margin: float = _opt(0.2, lo=0.0, hi=1.0)  # lead needed to switch (hysteresis)
    hold: int = _opt(2, lo=1, hi=1000)  # consecutive windows the lead must last (hysteresis)
    min_score: float = _opt(-1.0, lo=-1.0, hi=1.0)  # below it the decision is "none" (0: never; < 0: the bundle's)
    min_margin: float = _opt(-1.0, lo=-1.0, hi=1.0)  # lead over the runner-up needed, else "none" (same)
    background: str = ""  # a class published as "none" ("": the bundle's, else "_background")

    def validate(self, where: str = "policy") -> "PolicySettings":
        """Check every field against its type and range; ConfigError names the key and what is allowed."""
        for f in fields(self):
            check_setting("policy", f.name, f, getattr(self, f.name), where)
        return self

    def describe(self) -> str:
        """Short name for tables and plots, e.g. 'ema(alpha=0.5)' or 'ema(alpha=0.5) min_score=0.6'."""
        if self.kind == "ema":
            name = f"ema(alpha={self.ema_alpha:g})"
        elif self.kind == "vote":
            name = f"vote(k={self.vote_k})"
        elif self.kind == "hysteresis":
            name = f"hysteresis(margin={self.margin:g}, hold={self.hold})"
        else:
            name = "none"
        if self.min_score > 0:
            name += f" min_score={self.min_score:g}"
        if self.min_margin > 0:
            name += f" min_margin={self.min_margin:g}"
        return name


@dataclass(frozen=True)
class Decision:
    scores: np.ndarray  # (classes,) scores after the policy's smoothing
    label: int  # decided label index, or NONE
    changed: bool  # the decided label differs from the previous decision (first decision: True)
    previous: int | None  # label decided before this window (None for the first decision; may be NONE)
    picked: int = -1  # the class the smoothing picked before the "none" rules (== label unless label is NONE)

    @property
    def score(self) -> float:
        """Score of the decided label; for NONE the score of the class that fell short (what a change event reports)."""
        return float(self.scores[self.picked if self.label == NONE else self.label])

    def name(self, labels) -> str:
        """The decided label's name: labels[label], or "none"."""
        return label_name(self.label, labels)

    def previous_name(self, labels) -> str | None:
        """The previous decision's name (None before the first decision)."""
        return None if self.previous is None else label_name(self.previous, labels)


def label_name(index: int, labels) -> str:
    """Name of a decided label index: NONE is "none"."""
    return NONE_LABEL if index == NONE else labels[index]


def is_none(name: str | None, background: str = BACKGROUND_LABEL) -> bool:
    """A label name meaning "nothing known is happening": "none" or the background class."""
    return name == NONE_LABEL or name == (background or BACKGROUND_LABEL)


def gate(scores: np.ndarray, picked: int, settings: PolicySettings, background: int | None = None) -> int:
    """The "none" rules on one decision: `picked`, or NONE when it is the background class, scores below
    min_score, or leads the runner-up by less than min_margin (pure; see the module docstring)."""
    if background is not None and picked == background:
        return NONE
    score = float(scores[picked])
    # the same epsilon as hysteresis: a score of exactly the threshold in floating point passes;
    # a negative threshold is an unresolved "the bundle's" and means off
    if settings.min_score > 0 and score < settings.min_score - 1e-9:
        return NONE
    if settings.min_margin > 0:
        if scores.size < 2:
            return picked
        others = np.delete(scores, picked)
        if score - float(np.max(others)) < settings.min_margin - 1e-9:
            return NONE
    return picked


class Policy:
    """Base: subclasses implement _decide(scores) -> (smoothed scores, label); update() adds the "none" rules."""

    def __init__(self, settings: PolicySettings, background: int | None = None):
        self.settings = settings
        self.background = background  # index of the background class (decided as NONE), if any
        self._label: int | None = None  # decided label, NONE included
        self._picked: int | None = None  # the smoothing's own pick (what vote ties keep)

    @property
    def label(self) -> int | None:
        """Currently decided label (None before the first window, NONE for "none")."""
        return self._label

    def update(self, scores: np.ndarray) -> Decision:
        x = np.asarray(scores, dtype=np.float64)
        if x.ndim != 1 or x.size == 0:
            raise ValueError(f"scores must be a non-empty 1-D array, got shape {x.shape}")
        smoothed, picked = self._decide(x)
        self._picked = int(picked)
        label = gate(smoothed, self._picked, self.settings, self.background)
        previous = self._label
        self._label = label
        return Decision(scores=smoothed, label=label, changed=previous != label, previous=previous,
                        picked=self._picked)

    def reset(self) -> None:
        """Forget the score history (after a gap); the decided label is kept for change detection."""
        self._forget()

    def _forget(self) -> None:
        pass

    def _decide(self, x: np.ndarray) -> tuple[np.ndarray, int]:  # pragma: no cover - abstract
        raise NotImplementedError


class NoPolicy(Policy):
    def _decide(self, x):
        return x, int(np.argmax(x))


class EmaPolicy(Policy):
    def __init__(self, settings, background=None):
        super().__init__(settings, background)
        self._state: np.ndarray | None = None

    def _forget(self):
        self._state = None

    def _decide(self, x):
        if self._state is None or self._state.shape != x.shape:
            self._state = x.copy()
        else:
            a = self.settings.ema_alpha
            self._state = a * x + (1.0 - a) * self._state
        return self._state.copy(), int(np.argmax(self._state))


class VotePolicy(Policy):
    def __init__(self, settings, background=None):
        super().__init__(settings, background)
        self._scores: deque[np.ndarray] = deque(maxlen=settings.vote_k)
        self._votes: deque[int] = deque(maxlen=settings.vote_k)
        self._fresh = True  # no window since construction/reset: decide from the window alone

    def _forget(self):
        self._scores.clear()
        self._votes.clear()
        self._fresh = True

    def _decide(self, x):
        if self._scores and self._scores[-1].shape != x.shape:
            self._forget()
        self._scores.append(x)
        self._votes.append(int(np.argmax(x)))
        counts: dict[int, int] = {}
        for v in self._votes:
            counts[v] = counts.get(v, 0) + 1
        best = max(counts.values())
        tied = [v for v, c in counts.items() if c == best]
        current = None if self._fresh else self._picked
        self._fresh = False
        if current in tied:
            label = current
        else:
            # most recent vote among the tied labels
            label = next(v for v in reversed(self._votes) if v in tied)
        return np.mean(np.stack(self._scores), axis=0), int(label)


class HysteresisPolicy(Policy):
    def __init__(self, settings, background=None):
        super().__init__(settings, background)
        self._current: int | None = None
        self._candidate: int | None = None
        self._streak = 0

    def _forget(self):
        self._current = None
        self._candidate = None
        self._streak = 0

    def _decide(self, x):
        if self._current is None or self._current >= x.size:
            self._current = int(np.argmax(x))
            self._candidate, self._streak = None, 0
            return x, self._current
        others = x.copy()
        others[self._current] = -np.inf
        challenger = int(np.argmax(others))
        # A small epsilon so a lead of exactly `margin` (e.g. 0.7 - 0.5 in floating point) counts.
        if x[challenger] - x[self._current] >= self.settings.margin - 1e-9 and x[challenger] > x[self._current]:
            self._streak = self._streak + 1 if challenger == self._candidate else 1
            self._candidate = challenger
            if self._streak >= self.settings.hold:
                self._current = challenger
                self._candidate, self._streak = None, 0
        else:
            self._candidate, self._streak = None, 0
        return x, self._current


_POLICIES = {"none": NoPolicy, "ema": EmaPolicy, "vote": VotePolicy, "hysteresis": HysteresisPolicy}


def resolve(settings: PolicySettings, bundle_policy: dict | None) -> PolicySettings:
    """The policy a run uses: the config's settings with every "the bundle's" value (min_score or
    min_margin < 0, background "") taken from the bundle's [policy], else off / "_background"."""
    from dataclasses import replace

    bundle_policy = bundle_policy or {}
    take = {}
    for key in ("min_score", "min_margin"):
        if getattr(settings, key) < 0:
            take[key] = float(bundle_policy.get(key, 0.0))
    if not settings.background:
        take["background"] = str(bundle_policy.get("background", BACKGROUND_LABEL))
    return replace(settings, **take).validate("policy")


def background_index(settings: PolicySettings, labels) -> int | None:
    """Index of the background class in `labels` (None: no such class). A background other than the
    default name that is not a label is a ConfigError (a typo must not silently publish a class)."""
    name = settings.background or BACKGROUND_LABEL
    if labels is None:
        return None
    labels = list(labels)
    if name in labels:
        return labels.index(name)
    if name != BACKGROUND_LABEL:
        from stream.core.errors import ConfigError

        raise ConfigError(f"[policy] background = {name!r} is not a label of the model "
                          f"({', '.join(labels[:10])})")
    return None


def make_policy(settings: PolicySettings | None = None, labels=None) -> Policy:
    """A fresh policy (one per source) for validated settings; None gives the defaults.

    `labels` (the model's label names) lets the policy find the background class."""
    settings = (settings or PolicySettings()).validate()
    return _POLICIES[settings.kind](settings, background_index(settings, labels))


def decide_all(scores: np.ndarray, settings: PolicySettings, labels=None) -> list[Decision]:
    """Run a fresh policy over a (windows, classes) score sequence (offline evaluation, tests)."""
    policy = make_policy(settings, labels)
    return [policy.update(row) for row in np.asarray(scores)]
