"""Decide: the step between fusion and publishing. Turns the inference stage's window results into
wire messages (stream.core.wire), one decision policy and one seq counter per source.

    fuse (inference stage) -> WindowResult -> Decider.decide -> [Change], Prediction -> Publisher.send

Per source it owns the policy state (stream.core.policy: smoothing, voting, hysteresis, the "none"
rules; reset after a reconnect gap so a window from before the outage never decides one after it), the next
`seq` (predictions published, from 0 without holes; the end of stream reports it as `windows`),
and the change detection. It rounds what it publishes (times to µs, latencies to µs of a ms,
scores to 6 digits). It does no I/O: the ZeroMQ side is stream.runtime.publisher.
"""
from __future__ import annotations

import time

import numpy as np

from stream.core.fusion import top_k
from stream.core.policy import PolicySettings, make_policy
from stream.core.wire import Change, EndOfStream, LabelScore, Prediction, Preview, Status
from stream.runtime.events import WindowResult


def _top(scores, labels: tuple[str, ...], k: int) -> tuple[LabelScore, ...]:
    return tuple(LabelScore(d["label"], d["score"]) for d in top_k(np.asarray(scores), labels, k))


class Decider:
    """sources: names by source index; top: labels in a prediction's `top`; flow_length: frames a window covers
    before its newest (the bundle's span: L for two-stream bundles), so first_frame = frame - flow_length."""

    def __init__(self, sources: list[str], *, labels: tuple[str, ...], policy: PolicySettings, top: int,
                 flow_length: int):
        self.sources = list(sources)
        self.labels = labels
        self.top = top
        self.flow_length = flow_length
        self.published = [0] * len(sources)  # predictions per source: the next seq, and the EOS window count
        self.policies = [make_policy(policy, labels) for _ in sources]

    def decide(self, r: WindowResult) -> list[Change | Prediction]:
        """The window's prediction, preceded by a change event when the decided label changes."""
        seq = self.published[r.source]
        policy = self.policies[r.source]
        if r.gap_frames or r.gap_seconds:
            policy.reset()
        decision = policy.update(np.asarray(r.fused))
        name = self.sources[r.source]
        label, score = decision.name(self.labels), float(round(decision.score, 6))
        now = time.time()
        out: list[Change | Prediction] = []
        if decision.changed:
            previous = decision.previous_name(self.labels)
            out.append(Change(source=name, from_label=previous, to_label=label, frame=r.frame,
                              t_capture=round(r.t_capture, 6), score=score, seq=seq))
        gap = None
        if r.gap_frames or r.gap_seconds:
            gap = {"frames": int(r.gap_frames), "seconds": round(r.gap_seconds, 3)}
        out.append(Prediction(
            source=name, seq=seq, frame=r.frame, first_frame=r.frame - self.flow_length,
            t_capture=round(r.t_capture, 6), t_publish=round(now, 6),
            latency_ms=round((now - r.t_capture) * 1000.0, 3),
            stages_ms={"capture_to_flow": round((r.t_flow - r.t_capture) * 1000.0, 3),
                       "queue": round((r.t_infer_start - r.t_flow) * 1000.0, 3),
                       "inference": round((r.t_infer_end - r.t_infer_start) * 1000.0, 3),
                       "publish": round((now - r.t_infer_end) * 1000.0, 3)},
            batch=r.batch, label=label, score=score, top=_top(decision.scores, self.labels, self.top),
            fused=_top(r.fused, self.labels, 1)[0], gap=gap, **self._streams(r)))
        self.published[r.source] = seq + 1
        return out

    def _streams(self, r: WindowResult) -> dict:
        """spatial/temporal (two-stream results) or every network's top-1 by name (bundle format 2)."""
        if r.streams is None:
            return {"spatial": _top(r.spatial, self.labels, 1)[0], "temporal": _top(r.temporal, self.labels, 1)[0]}
        named = {name: _top(p, self.labels, 1)[0] for name, p in r.streams.items()}
        return {"spatial": named.get("spatial"), "temporal": named.get("temporal"), "streams": named}

    def end(self, source: int, *, frames: int, dropped: int, windows_dropped: int, error: str) -> EndOfStream:
        """The end of stream of a source: `windows` is the number of predictions it published."""
        return EndOfStream(source=self.sources[source], frames=int(frames), windows=self.published[source],
                           dropped=int(dropped), windows_dropped=int(windows_dropped), error=error)

    def status(self, source: int, fields: dict) -> Status:
        """`fields` starts with "state"; the rest is published as given, in order."""
        details = {k: v for k, v in fields.items() if k != "state"}
        return Status(source=self.sources[source], state=fields["state"], details=details)

    def preview(self, source: int, *, frame: int, t_capture: float, width: int, height: int) -> Preview:
        return Preview(source=self.sources[source], frame=int(frame), t_capture=round(t_capture, 6),
                       width=int(width), height=int(height))
