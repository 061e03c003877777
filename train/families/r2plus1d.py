"""torchvision R(2+1)D-18 from scratch on `clip` (B, 3, T, S, S): the factorised 3D control for the inflation claim.

Far too heavy for real time on a small CPU (the issue measured 41 GFLOPs and ~450 ms per T=8
window); shipped as code and measured numbers, never as a zoo bundle. `tiny=True` builds a
one-block-per-stage, narrow variant of the same factorised design for the tests.
"""
from __future__ import annotations

from torch import nn


def build_r2plus1d(num_classes: int, tiny: bool = False) -> nn.Module:
    from torchvision.models.video import r2plus1d_18
    from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, R2Plus1dStem, VideoResNet

    if not tiny:
        return r2plus1d_18(weights=None, num_classes=num_classes)

    class TinyStem(nn.Sequential):
        def __init__(self):
            super().__init__(nn.Conv3d(3, 8, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False), nn.BatchNorm3d(8),
                             nn.ReLU(inplace=True), nn.Conv3d(8, 64, (3, 1, 1), 1, (1, 0, 0), bias=False),
                             nn.BatchNorm3d(64), nn.ReLU(inplace=True))

    del R2Plus1dStem
    return VideoResNet(BasicBlock, [Conv2Plus1D] * 4, [1, 1, 1, 1], TinyStem, num_classes=num_classes)
