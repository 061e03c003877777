"""Convolutional two-stream fusion (Feichtenhofer, Pinz, Zisserman, CVPR 2016) on two Lite0 towers.

One graph, two inputs: `frame` (B, 3, S, S) and `flow_stack` (B, 2L, S, S) -> logits.
The towers are fused at the last convolutional layer:
  fuse_at = "block"  the last MBConv output (320 channels, S/32); the towers stop there and ONE
                     conv head (320 -> 1280, from the temporal tower) follows the fusion: both
                     towers are truncated after the fusion point (fewer parameters than late fusion)
  fuse_at = "head"   the conv-head output (1280 channels), the issue's prototype (10 M parameters)
method: "conv" (concatenate + 1x1 conv, initialised to the average of the two towers as the
paper's identity init), "sum" or "max" (no parameters).
Temporal fusion (training only, K > 1 TSN segments): the fused maps of the K segments form a
(B, C, K, h, w) volume -> depthwise 3 x 1 x 1 conv over the segments (replicate padding,
identity init) -> 3D max pooling over (K, 2, 2). With one window (K = 1, the runtime) the
temporal conv is exactly its three taps summed, i.e. what training computes for a static
segment sequence, and is exported as a per-channel scale.
score_fusion: the temporal tower keeps its own head and classifier and the output is the log of
the average of the fused and the temporal softmax (the paper found the score fusion on top
helped); softmax(output) is that average, so the runtime's late-fusion arithmetic stays the same.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from train.models import build_model, load_state_dict_file

FUSE_POINTS = ("block", "head")
FUSE_METHODS = ("conv", "sum", "max")


def _tower_blocks(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = F.relu6(net._bn0(net._conv_stem(x)))
    for block in net._blocks:
        x = block(x)
    return x


def _head(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.relu6(net._bn1(net._conv_head(x)))


class ConvFusionNet(nn.Module):
    def __init__(self, num_classes: int, flow_length: int = 10, fuse_at: str = "block", method: str = "conv",
                 score_fusion: bool = True, temporal_fusion: bool = True, dropout: float = 0.5,
                 spatial_weights: str | None = "imagenet", temporal_weights: str | None = "imagenet"):
        super().__init__()
        if fuse_at not in FUSE_POINTS:
            raise ValueError(f"fuse_at = {fuse_at!r}: expected one of {', '.join(FUSE_POINTS)}")
        if method not in FUSE_METHODS:
            raise ValueError(f"method = {method!r}: expected one of {', '.join(FUSE_METHODS)}")
        self.fuse_at, self.method = fuse_at, method
        self.score_fusion, self.temporal_fusion = score_fusion, temporal_fusion
        self.flow_length = flow_length
        self.segments = 1  # set to K by the training loop; 1 = one window (export, evaluation)
        self.spatial = build_model("efficientnet_lite0", num_classes, 3, weights=spatial_weights, dropout=dropout)
        self.temporal = build_model("efficientnet_lite0", num_classes, 2 * flow_length, weights=temporal_weights,
                                    dropout=dropout)
        channels = 320 if fuse_at == "block" else 1280
        if method == "conv":
            self.fuse = nn.Conv2d(2 * channels, channels, 1, bias=True)
            with torch.no_grad():
                eye = torch.eye(channels).view(channels, channels, 1, 1) * 0.5
                self.fuse.weight.copy_(torch.cat([eye, eye], dim=1))
                self.fuse.bias.zero_()
        if temporal_fusion:
            self.tfuse = nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0), padding_mode="replicate",
                                   groups=channels, bias=False)
            with torch.no_grad():
                self.tfuse.weight.zero_()
                self.tfuse.weight[:, :, 1] = 1.0
        # after fusion: (block) one conv head taken from the temporal tower, then the classifier
        if fuse_at == "block":
            self.fused_head = nn.Conv2d(320, 1280, 1, bias=False)
            self.fused_bn = nn.BatchNorm2d(1280, eps=1e-3, momentum=0.1)
            self._copy_head()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1280, num_classes)
        with torch.no_grad():
            self.fc.weight.copy_(self.temporal._fc.weight)
            self.fc.bias.copy_(self.temporal._fc.bias)
        self._truncate()

    def _copy_head(self) -> None:
        with torch.no_grad():
            self.fused_head.weight.copy_(self.temporal._conv_head.weight)
            self.fused_bn.load_state_dict(self.temporal._bn1.state_dict())

    def _truncate(self) -> None:
        """Drop the layers after the fusion point that the graph never uses (they would only add parameters)."""
        if self.fuse_at == "block":
            self.spatial._conv_head = nn.Identity()
            self.spatial._bn1 = nn.Identity()
        self.spatial._fc = nn.Identity()
        if not self.score_fusion:
            if self.fuse_at == "block":
                self.temporal._conv_head = nn.Identity()
                self.temporal._bn1 = nn.Identity()
            self.temporal._fc = nn.Identity()

    def load_streams(self, spatial_ckpt: str, temporal_ckpt: str) -> None:
        """Initialise the towers (and the fused head/classifier) from trained `late` stream checkpoints."""
        s = dict(load_state_dict_file(spatial_ckpt))
        t = dict(load_state_dict_file(temporal_ckpt))
        full_t = build_model("efficientnet_lite0", self.fc.out_features, 2 * self.flow_length, weights=None)
        full_t.load_state_dict(t, strict=True)
        own_s = self.spatial.state_dict()
        self.spatial.load_state_dict({k: v for k, v in s.items() if k in own_s}, strict=True)
        own_t = self.temporal.state_dict()
        self.temporal.load_state_dict({k: v for k, v in t.items() if k in own_t}, strict=True)
        with torch.no_grad():
            if self.fuse_at == "block":
                self.fused_head.weight.copy_(full_t._conv_head.weight)
                self.fused_bn.load_state_dict(full_t._bn1.state_dict())
            self.fc.weight.copy_(full_t._fc.weight)
            self.fc.bias.copy_(full_t._fc.bias)

    def forward(self, frame: torch.Tensor, flow_stack: torch.Tensor) -> torch.Tensor:
        k = self.segments
        xs = _tower_blocks(self.spatial, frame)
        xt = _tower_blocks(self.temporal, flow_stack)
        if self.fuse_at == "head":
            xs, xt = _head(self.spatial, xs), _head(self.temporal, xt)
        if self.method == "conv":
            fused = self.fuse(torch.cat([xs, xt], dim=1))
        elif self.method == "sum":
            fused = xs + xt
        else:
            fused = torch.maximum(xs, xt)
        if self.temporal_fusion:
            if k > 1:
                v = fused.reshape(-1, k, *fused.shape[1:]).transpose(1, 2)  # (B, C, K, h, w)
                fused = self.tfuse(v).transpose(1, 2).reshape(-1, *fused.shape[1:])
            else:  # one window: replicate padding makes the three taps see the same map
                fused = fused * self.tfuse.weight.sum(dim=2).view(1, -1, 1, 1)
        if self.fuse_at == "block":
            fused = F.relu6(self.fused_bn(self.fused_head(fused)))
        if self.temporal_fusion:
            if k > 1:
                v = fused.reshape(-1, k, *fused.shape[1:]).transpose(1, 2)
                pooled = F.max_pool3d(v, (k, 2, 2), (k, 2, 2), ceil_mode=True).flatten(2).mean(dim=2)
            else:
                pooled = F.max_pool2d(fused, 2, 2, ceil_mode=True).mean(dim=(2, 3))
        else:
            pooled = fused.mean(dim=(2, 3))
            if k > 1:
                pooled = pooled.reshape(-1, k, pooled.shape[1]).mean(dim=1)
        logits = self.fc(self.dropout(pooled))
        if not self.score_fusion:
            return logits
        pooled_t = _head(self.temporal, xt).mean(dim=(2, 3)) if self.fuse_at == "block" else xt.mean(dim=(2, 3))
        tl = self.temporal._fc(self.temporal._dropout(pooled_t))
        if k > 1:
            tl = tl.reshape(-1, k, tl.shape[1]).mean(dim=1)
        # log of the averaged softmax as a log-sum-exp of log-softmaxes: finite in int8 too (the int8 graph of
        # log(average) rounded small probabilities to 0, and a clamp before the log was rounded to 0 as well)
        both = torch.stack([F.log_softmax(logits, dim=1), F.log_softmax(tl, dim=1)])
        return torch.logsumexp(both, dim=0) - math.log(2.0)
