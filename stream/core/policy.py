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
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, fields

import numpy as np

from stream.core.setting import check_setting, setting as _opt

KINDS = ("none", "ema", "vote", "hysteresis")


@dataclass(frozen=True)
class PolicySettings:
    """[policy] section of config.toml."""

    kind: str = _opt("ema", choices=KINDS)
    ema_alpha: float = _opt(0.5, lo=0.01, hi=1.0)  # weight of the newest window
    vote_k: int = _opt(5, lo=1, hi=1000)  # windows in the vote
    margin: float = _opt(0.2, lo=0.0, hi=1.0)  # lead needed to switch (hysteresis)
    hold: int = _opt(2, lo=1, hi=1000)  # consecutive windows the lead must last (hysteresis)

    def validate(self, where: str = "policy") -> "PolicySettings":
        """Check every field against its type and range; ConfigError names the key and what is allowed."""
        for f in fields(self):
            check_setting("policy", f.name, f, getattr(self, f.name), where)
        return self

    def describe(self) -> str:
        """Short name for tables and plots, e.g. 'ema(alpha=0.5)'."""
        if self.kind == "ema":
            return f"ema(alpha={self.ema_alpha:g})"
        if self.kind == "vote":
            return f"vote(k={self.vote_k})"
        if self.kind == "hysteresis":
            return f"hysteresis(margin={self.margin:g}, hold={self.hold})"
        return "none"


@dataclass(frozen=True)
class Decision:
    scores: np.ndarray  # (classes,) scores after the policy's smoothing
    label: int  # decided label index
    changed: bool  # the decided label differs from the previous decision (first decision: True)
    previous: int | None  # label decided before this window (None for the first decision)

    @property
    def score(self) -> float:
        """Score of the decided label (what a change event reports)."""
        return float(self.scores[self.label])


class Policy:
    """Base: subclasses implement _decide(scores) -> (smoothed scores, label)."""

    def __init__(self, settings: PolicySettings):
        self.settings = settings
        self._label: int | None = None

    @property
    def label(self) -> int | None:
        """Currently decided label (None before the first window)."""
        return self._label

    def update(self, scores: np.ndarray) -> Decision:
        x = np.asarray(scores, dtype=np.float64)
        if x.ndim != 1 or x.size == 0:
            raise ValueError(f"scores must be a non-empty 1-D array, got shape {x.shape}")
        smoothed, label = self._decide(x)
        previous = self._label
        self._label = int(label)
        return Decision(scores=smoothed, label=self._label, changed=previous != self._label, previous=previous)

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
    def __init__(self, settings):
        super().__init__(settings)
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
    def __init__(self, settings):
        super().__init__(settings)
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
        current = None if self._fresh else self._label
        self._fresh = False
        if current in tied:
            label = current
        else:
            # most recent vote among the tied labels
            label = next(v for v in reversed(self._votes) if v in tied)
        return np.mean(np.stack(self._scores), axis=0), int(label)


class HysteresisPolicy(Policy):
    def __init__(self, settings):
        super().__init__(settings)
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


def make_policy(settings: PolicySettings | None = None) -> Policy:
    """A fresh policy (one per source) for validated settings; None gives the defaults."""
    settings = (settings or PolicySettings()).validate()
    return _POLICIES[settings.kind](settings)


def decide_all(scores: np.ndarray, settings: PolicySettings) -> list[Decision]:
    """Run a fresh policy over a (windows, classes) score sequence (offline evaluation, tests)."""
    policy = make_policy(settings)
    return [policy.update(row) for row in np.asarray(scores)]
