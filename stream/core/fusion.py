"""Late fusion of the two streams: softmax each, weighted average (TSN: temporal 1.5 : spatial 1).

Smoothing over windows and the decided label are stream.core.policy's job."""
from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (B, C) logits, stable for large values."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fuse_scores(spatial_logits: np.ndarray, temporal_logits: np.ndarray, *, spatial_weight: float,
                temporal_weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(spatial probs, temporal probs, fused probs); fused = weighted mean of the two softmaxes (sums to 1)."""
    ps = softmax(spatial_logits.astype(np.float64))
    pt = softmax(temporal_logits.astype(np.float64))
    total = spatial_weight + temporal_weight
    fused = (spatial_weight * ps + temporal_weight * pt) / total
    return ps, pt, fused


def top_k(scores: np.ndarray, labels: tuple[str, ...], k: int) -> list[dict]:
    """[{label, score}] best first; ties broken by label order so output is deterministic."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
    return [{"label": labels[i], "score": round(float(scores[i]), 6)} for i in order]


def fuse_networks(logits: dict[str, np.ndarray], *, method: str, weights: dict[str, float],
                  network: str = "") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({name: probs}, fused probs) for any number of networks (bundle format 2 [fusion]).

    "late": weighted mean of each network's softmax (two networks: exactly fuse_scores);
    "single": the named network's softmax is the fused score.
    """
    probs = {name: softmax(x.astype(np.float64)) for name, x in logits.items()}
    if method == "single":
        return probs, probs[network]
    total = sum(weights[name] for name in probs)
    fused = sum(weights[name] * p for name, p in probs.items()) / total
    return probs, fused
