"""Test helpers: a real, tiny, randomly initialised (seeded) two-stream bundle in a few seconds.

The networks are genuine torch conv nets exported through train.onnx_export, the same code
`twostream export` uses, so pipeline tests run the real ONNX path without training anything.
"""
from __future__ import annotations

from pathlib import Path


def tiny_net(in_channels: int, num_classes: int, width: int = 8):
    """A small conv net: conv-bn-relu (stride 2) x2, global average pool, linear."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )


def make_tiny_bundle(out_dir: str | Path, num_classes: int = 4, input_size: int = 32, flow_length: int = 4,
                     labels: list[str] | None = None, seed: int = 0, fusion_weights: dict[str, float] | None = None,
                     flow=None) -> Path:
    """Write a valid bundle (spatial.onnx, temporal.onnx, labels.txt, bundle.toml) to `out_dir`; return it.

    Deterministic for a given seed. Labels default to class0..classN-1.
    """
    import torch

    from stream.core.flow import FlowSettings
    from train.onnx_export import export_bundle

    labels = list(labels) if labels is not None else [f"class{i}" for i in range(num_classes)]
    if len(labels) != num_classes:
        raise ValueError(f"{len(labels)} labels for {num_classes} classes")
    torch.manual_seed(seed)
    spatial = tiny_net(3, num_classes).eval()
    temporal = tiny_net(2 * flow_length, num_classes).eval()
    export_bundle(out_dir, spatial=spatial, temporal=temporal, labels=labels, input_size=input_size,
                  flow_length=flow_length, flow=flow or FlowSettings(), fusion_weights=fusion_weights,
                  arch="tiny_test_net", provenance={"note": "random seeded test network (train.testing)",
                                                    "seed": seed})
    return Path(out_dir)
