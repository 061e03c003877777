"""I3D-inflated EfficientNet-Lite0: `clip` (B, 3, T, S, S) -> logits, every temporal conv as exact 2D ops.

Inflation (Carreira & Zisserman 2017, "bootstrapping"): a 2D k x k kernel becomes t x k x k by
repeating it t times and dividing by t, so a clip of identical frames gives the 2D network's
activations and ImageNet training carries over. `inflate` chooses which convs get t = 3:
  all_dw     the stem and every depthwise conv (default)
  stem_last  the stem and the depthwise convs of the last three stages (blocks 8..15)
  none       no temporal extent: the 2D network per frame, features averaged over T
Every other conv stays 1 x 1 x 1. `time_pool` chooses where time is downsampled (original I3D strides
time early; averaging consecutive frame pairs is a 2 x 1 x 1 average pool with stride 2):
  none       never: T frames in, T feature maps out (runs and bundles from before the option)
  stem       after the stem (conv, BN, ReLU6): T -> T/2 for every block (about half the FLOPs)
  stem2      as stem, and again before block STEM2_SECOND_POOL_BLOCK: T/2 -> T/4 for the rest
Each pool is a reshape of (B*T, C, H, W) to (B*T/2, 2, C*H*W) and a mean over the pair (a 3-D Reshape and
ReduceMean in the export, no 5-D pooling); the TemporalConvs after a pool are built for the reduced T.
At 112 px, T = 8: none 2.07 GFLOPs per window, stem 1.10, stem2 0.75.

Implementation: the clip is laid out as (B*T, C, H, W); a (t, k, k) conv is t 2D convs (one per
temporal tap, same groups as the 2D layer) followed by shifted sums over time with zero padding
t//2 - exactly Conv3d (tested to float precision). The issue measured
ONNX Runtime's fp32 grouped Conv3d at ~17 GFLOP/s against ~80 for 2D (4.5x slower than this
rewrite); the export therefore never contains a Conv3d. `impl="conv3d"` computes the same layer
with F.conv3d (reference for the exactness test and the cost comparison).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from train.models import build_model

INFLATE_MODES = ("all_dw", "stem_last", "none")
STEM_LAST_FIRST_BLOCK = 8  # stages 5-7 of Lite0 (blocks 8..15)
TIME_POOL_MODES = ("none", "stem", "stem2")
STEM2_SECOND_POOL_BLOCK = 5  # stem2: second pool before stage 4 (stride 16, as I3D's before Mixed_4b): blocks 5-15


def _same_pad(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    ih, iw = int(x.shape[-2]), int(x.shape[-1])
    pad_h = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
    pad_w = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
    if pad_h or pad_w:
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
    return x


class TemporalConv(nn.Module):
    """A (t, k, k) convolution (TF-SAME in space, zero padding t//2 in time, stride 1 in time) on (B*T, C, H, W)."""

    def __init__(self, conv: nn.Conv2d, t: int, clip_length: int, impl: str = "2d"):
        super().__init__()
        if t < 1 or t % 2 == 0:
            raise ValueError(f"temporal extent t = {t}: expected an odd number >= 1")
        if impl not in ("2d", "conv3d"):
            raise ValueError(f"impl = {impl!r}: expected '2d' or 'conv3d'")
        w = conv.weight.detach()
        # bootstrapping: repeat the 2D kernel t times over time, divide by t
        self.weight = nn.Parameter(w.unsqueeze(2).repeat(1, 1, t, 1, 1) / t)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())
        self.t, self.T, self.impl = t, clip_length, impl
        self.k, self.stride, self.groups = conv.kernel_size[0], conv.stride[0], conv.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _same_pad(x, self.k, self.stride)
        t, T = self.t, self.T
        out_ch = self.weight.shape[0]
        if self.impl == "conv3d":
            b = x.shape[0] // T
            x5 = x.reshape(b, T, *x.shape[1:]).transpose(1, 2)
            y = F.conv3d(x5, self.weight, self.bias, (1, self.stride, self.stride), (t // 2, 0, 0), 1, self.groups)
            return y.transpose(1, 2).reshape(-1, out_ch, y.shape[-2], y.shape[-1])
        if t == 1:
            return F.conv2d(x, self.weight[:, :, 0], self.bias, self.stride, 0, 1, self.groups)
        # one 2D conv per temporal tap (a channel-multiplier conv holding all taps measured slower in torch)
        z = [F.conv2d(x, self.weight[:, :, j], None, self.stride, 0, 1, self.groups) for j in range(t)]
        h, w = z[0].shape[-2], z[0].shape[-1]
        z = [zj.reshape(-1, T, out_ch, h, w) for zj in z]
        y = z[t // 2]
        for j in range(t):
            d = j - t // 2  # output frame tau takes tap j from input frame tau + d
            if d == 0 or abs(d) >= T:
                continue
            zj = z[j]
            if d > 0:
                shifted = torch.cat([zj[:, d:], torch.zeros_like(zj[:, :d])], dim=1)
            else:
                shifted = torch.cat([torch.zeros_like(zj[:, :(-d)]), zj[:, :T + d]], dim=1)
            y = y + shifted
        y = y.reshape(-1, out_ch, h, w)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y


class TimePool(nn.Module):
    """Average consecutive frame pairs of (B*T, C, H, W) (frames of a clip adjacent, T even) -> (B*T/2, C, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = x.shape[1], x.shape[2], x.shape[3]
        return x.reshape(-1, 2, c * h * w).mean(dim=1).reshape(-1, c, h, w)


def pool_points(time_pool: str) -> tuple[int, ...]:
    """Indices of the blocks that a time pool precedes (block 0 = right after the stem)."""
    if time_pool not in TIME_POOL_MODES:
        raise ValueError(f"time_pool = {time_pool!r}: expected one of {', '.join(TIME_POOL_MODES)}")
    return {"none": (), "stem": (0,), "stem2": (0, STEM2_SECOND_POOL_BLOCK)}[time_pool]


class I3DLite0(nn.Module):
    """Inflated Lite0 on clips; `backbone` keeps the 2D module names (state dicts stay readable)."""

    def __init__(self, num_classes: int, clip_length: int = 8, inflate: str = "all_dw",
                 weights: str | None = "imagenet",
                 dropout: float = 0.5, impl: str = "2d", t: int = 3, time_pool: str = "none"):
        super().__init__()
        points = pool_points(time_pool)
        if clip_length % (2 ** len(points)):
            raise ValueError(f"time_pool = {time_pool!r} halves T {len(points)} time(s): "
                             f"clip_length {clip_length} is not divisible by {2 ** len(points)}")
        if inflate not in INFLATE_MODES:
            raise ValueError(f"inflate = {inflate!r}: expected one of {', '.join(INFLATE_MODES)}")
        if clip_length < 1:
            raise ValueError(f"clip_length = {clip_length}: expected >= 1")
        net = build_model("efficientnet_lite0", num_classes, 3, weights=weights, dropout=dropout)
        self.clip_length, self.inflate, self.time_pool = clip_length, inflate, time_pool
        self.pool_before = frozenset(points)  # block indices preceded by a TimePool
        self.tpool = TimePool()  # parameter-free: state dicts of every time_pool are the same
        if inflate != "none":
            net._conv_stem = TemporalConv(net._conv_stem, t, clip_length, impl)
            T = clip_length
            for i, block in enumerate(net._blocks):
                if i in self.pool_before:
                    T //= 2
                if inflate == "all_dw" or i >= STEM_LAST_FIRST_BLOCK:
                    block._depthwise_conv = TemporalConv(block._depthwise_conv, t, T, impl)
        self.out_length = clip_length // 2 ** len(points)  # feature maps per clip at the head
        self.backbone = net

    def temporal_convs(self) -> list[str]:
        """Names of the convs that have a temporal extent > 1."""
        return [n for n, m in self.named_modules() if isinstance(m, TemporalConv) and m.t > 1]

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        net = self.backbone
        b, c, T, h, w = clip.shape
        x = clip.transpose(1, 2).reshape(-1, c, h, w)  # (B*T, 3, H, W), frames of one clip adjacent
        x = F.relu6(net._bn0(net._conv_stem(x)))
        for i, block in enumerate(net._blocks):
            if i in self.pool_before:
                x = self.tpool(x)
            x = block(x)
        x = F.relu6(net._bn1(net._conv_head(x)))
        x = x.reshape(-1, self.out_length, x.shape[1], x.shape[2], x.shape[3]).mean(dim=(1, 3, 4))
        return net._fc(net._dropout(x))


def set_impl(model: nn.Module, impl: str) -> None:
    """Switch every TemporalConv between the 2D rewrite and F.conv3d (same weights)."""
    for m in model.modules():
        if isinstance(m, TemporalConv):
            m.impl = impl


