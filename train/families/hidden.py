"""Hidden two-stream temporal network: Tiny-MotionNet stacked under the temporal Lite0, one graph.

`frame_stack` (B, 3(L+1), S, S) -> MotionNet's full-resolution flow (bound units, clamped to
[-1, 1] like the dequantised DIS stack) -> temporal EfficientNet-Lite0 (2L input channels) -> logits.
Training: MotionNet alone, unsupervised (train.families.motion); then the stack end to end with
cross-entropy plus the unsupervised loss (multi-task, as Zhu et al.), the temporal Lite0 starting
from a `late` temporal checkpoint trained on DIS flow (or ImageNet cross-modality init).
The bundle late-fuses this network with a `late` spatial stream.
"""
from __future__ import annotations

import torch
from torch import nn

from train.families.motion import TinyMotionNet
from train.models import build_model


class HiddenTemporal(nn.Module):
    def __init__(self, num_classes: int, stack_length: int = 10, width: int = 32, dropout: float = 0.5,
                 temporal_weights: str | None = "imagenet"):
        super().__init__()
        self.stack_length = stack_length
        self.motion = TinyMotionNet(stack_length, width)
        self.temporal = build_model("efficientnet_lite0", num_classes, 2 * stack_length, weights=temporal_weights,
                                    dropout=dropout)
        self.last_flows: list[torch.Tensor] | None = None  # kept in training for the unsupervised loss

    def forward(self, frame_stack: torch.Tensor) -> torch.Tensor:
        flows = self.motion(frame_stack)
        if self.training:
            self.last_flows = flows
        return self.temporal(torch.clamp(flows[0], -1.0, 1.0))


class MotionOnly(nn.Module):
    """Export/bench wrapper: frame_stack -> full-resolution flow (bound units)."""

    def __init__(self, motion: TinyMotionNet):
        super().__init__()
        self.motion = motion

    def forward(self, frame_stack: torch.Tensor) -> torch.Tensor:
        return self.motion(frame_stack)[0]
