"""Tiny-MotionNet (Zhu et al. 2017, Hidden Two-Stream): L+1 stacked RGB frames -> L flow fields, no labels.

Encoder (four stride-2 3x3 convs) and decoder (transposed convs with skip connections) that
predicts flow at 1/16, 1/8, 1/4 and 1/2 resolution, each coarser prediction upsampled into the
next stage; the full-resolution flow is the 1/2 prediction upsampled (a full-resolution decoder
stage cost 3.6 GFLOPs per window for the whole hidden stream, this layout ~1.1). Output channels
are interleaved (u1, v1, u2, v2, ...) in units of the flow
bound (flow_px / bound), the same scale as the runtime's dequantised flow stack, so the
temporal Lite0 trained on DIS flow can sit on top. Flow i is backward flow between frames i
and i+1 (frame_i(x) ~ frame_{i+1}(x + flow_i(x))), OpenCV's convention for DIS.

Unsupervised loss per scale (frames average-pooled to that scale): generalised Charbonnier
photometric error of the warped frame, (1 - SSIM) / 2 on 3x3 windows, and Charbonnier
smoothness of the flow gradients; pixels warped from outside the frame are masked.
width 32 is the "half width" variant the issue measured cheaper (2.4 M params, 0.66 GFLOPs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.1, inplace=True))


class TinyMotionNet(nn.Module):
    def __init__(self, stack_length: int = 10, width: int = 32):
        super().__init__()
        L, w = stack_length, width
        self.stack_length, self.width = L, w
        self.enc1 = _conv(3 * (L + 1), w, 2)  # 1/2: a full-resolution first stage measured 3.6 GFLOPs in all
        self.enc2 = _conv(w, 2 * w, 2)
        self.enc3 = _conv(2 * w, 4 * w, 2)
        self.enc4 = nn.Sequential(_conv(4 * w, 8 * w, 2), _conv(8 * w, 8 * w))
        self.flow4 = nn.Conv2d(8 * w, 2 * L, 3, 1, 1)
        self.up3 = nn.ConvTranspose2d(8 * w, 4 * w, 4, 2, 1)
        self.dec3 = _conv(8 * w + 2 * L, 4 * w)
        self.flow3 = nn.Conv2d(4 * w, 2 * L, 3, 1, 1)
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1)
        self.dec2 = _conv(4 * w + 2 * L, 2 * w)
        self.flow2 = nn.Conv2d(2 * w, 2 * L, 3, 1, 1)
        self.up1 = nn.ConvTranspose2d(2 * w, w, 4, 2, 1)
        self.dec1 = _conv(2 * w + 2 * L, w)
        self.flow1 = nn.Conv2d(w, 2 * L, 3, 1, 1)
        for m in (self.flow1, self.flow2, self.flow3, self.flow4):  # start at zero motion
            nn.init.normal_(m.weight, std=1e-3)
            nn.init.zeros_(m.bias)

    def forward(self, frame_stack: torch.Tensor) -> list[torch.Tensor]:
        """Flows at full (bilinear x2 of the 1/2 prediction), 1/2, 1/4, 1/8, 1/16 resolution, finest first,
        each (B, 2L, h, w) in bound units."""
        e1 = self.enc1(frame_stack)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        e4 = self.enc4(e3)
        f4 = self.flow4(e4)
        u4 = self._fit(_up(f4), e3)
        d3 = self.dec3(torch.cat([self._fit(self.up3(e4), e3), e3, u4], 1))
        f3 = self.flow3(d3) + u4
        u3 = self._fit(_up(f3), e2)
        d2 = self.dec2(torch.cat([self._fit(self.up2(d3), e2), e2, u3], 1))
        f2 = self.flow2(d2) + u3
        u2 = self._fit(_up(f2), e1)
        d1 = self.dec1(torch.cat([self._fit(self.up1(d2), e1), e1, u2], 1))
        f1 = self.flow1(d1) + u2
        full = F.interpolate(f1, size=frame_stack.shape[-2:], mode="bilinear", align_corners=False)
        return [full, f1, f2, f3, f4]

    @staticmethod
    def _fit(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Crop an upsampled map to the skip connection's size (odd sizes, e.g. 7 -> 14 vs a 13 map)."""
        return x[..., :ref.shape[-2], :ref.shape[-1]]


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def warp(image: torch.Tensor, flow_px: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample image (N, C, H, W) at x + flow (N, 2, H, W, pixels); returns (warped, valid mask (N, 1, H, W))."""
    n, _, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=image.dtype), torch.arange(w, dtype=image.dtype), indexing="ij")
    gx = xs.unsqueeze(0) + flow_px[:, 0]
    gy = ys.unsqueeze(0) + flow_px[:, 1]
    grid = torch.stack([2.0 * gx / max(w - 1, 1) - 1.0, 2.0 * gy / max(h - 1, 1) - 1.0], dim=-1)
    warped = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)
    valid = ((gx >= 0) & (gx <= w - 1) & (gy >= 0) & (gy <= h - 1)).unsqueeze(1).to(image.dtype)
    return warped, valid


def _charbonnier(x: torch.Tensor, alpha: float = 0.4, eps: float = 1e-3) -> torch.Tensor:
    return (x * x + eps * eps) ** alpha


def _ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mx, my = F.avg_pool2d(x, 3, 1, 1), F.avg_pool2d(y, 3, 1, 1)
    sx = F.avg_pool2d(x * x, 3, 1, 1) - mx * mx
    sy = F.avg_pool2d(y * y, 3, 1, 1) - my * my
    sxy = F.avg_pool2d(x * y, 3, 1, 1) - mx * my
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sx + sy + c2))


def pairs(frame_stack: torch.Tensor, stack_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(first frames, second frames), each (B*L, 3, H, W), of the L consecutive pairs in a frame stack."""
    b, _, h, w = frame_stack.shape
    frames = frame_stack.reshape(b, stack_length + 1, 3, h, w)
    return frames[:, :-1].reshape(-1, 3, h, w), frames[:, 1:].reshape(-1, 3, h, w)


def to_pixels(flow: torch.Tensor, bound: float, full_size: int) -> torch.Tensor:
    """(B, 2L, h, w) flow in bound units -> (B*L, 2, h, w) pixels at the map's own resolution."""
    b, c, h, w = flow.shape
    return flow.reshape(b * (c // 2), 2, h, w) * (bound * w / full_size)


def photometric_error(first: torch.Tensor, second: torch.Tensor, flow_px: torch.Tensor) -> torch.Tensor:
    """Per-pair mean absolute error of first vs second warped back by flow (pixel units of the input values)."""
    warped, valid = warp(second, flow_px)
    err = (warped - first).abs().mean(dim=1, keepdim=True) * valid
    return err.flatten(1).sum(1) / valid.flatten(1).sum(1).clamp(min=1.0)


def unsupervised_loss(flows: list[torch.Tensor], frame_stack: torch.Tensor, stack_length: int, bound: float,
                      smooth: float = 0.1, ssim: float = 1.0, scale_weights=(1.0, 0.5, 0.25, 0.125)) -> torch.Tensor:
    """Multi-scale reconstruction (Charbonnier + SSIM) and smoothness loss of MotionNet's flows."""
    first, second = pairs(frame_stack, stack_length)
    full = frame_stack.shape[-1]
    total = frame_stack.new_zeros(())
    for flow, weight in zip(flows[:len(scale_weights)], scale_weights, strict=False):
        h, w = flow.shape[-2:]
        a = first if h == first.shape[-2] else F.adaptive_avg_pool2d(first, (h, w))
        b = second if h == second.shape[-2] else F.adaptive_avg_pool2d(second, (h, w))
        fpx = to_pixels(flow, bound, full)
        warped, valid = warp(b, fpx)
        photo = (_charbonnier(warped - a) * valid).sum() / (valid.sum() * a.shape[1]).clamp(min=1.0)
        structure = ((1.0 - _ssim(warped, a)) / 2.0 * valid).sum() / (valid.sum() * a.shape[1]).clamp(min=1.0)
        dx = fpx[..., :, 1:] - fpx[..., :, :-1]
        dy = fpx[..., 1:, :] - fpx[..., :-1, :]
        smoothness = _charbonnier(dx).mean() + _charbonnier(dy).mean()
        total = total + weight * (photo + ssim * structure + smooth * smoothness)
    return total
