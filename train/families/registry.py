"""FAMILIES: what each family's network takes from a window, how it is built, and its training defaults.

build(cfg, num_classes) -> torch module whose forward takes the inputs in `kinds` order (one window
each, batched) and returns logits; `segment_aware` models take all K segments of a sample at once
(convfusion's temporal fusion), the others are averaged over segments (TSN consensus) by the loop.
cfg is the plain dict stored in every checkpoint's meta["config"], so export rebuilds the same net.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class Family:
    name: str
    kinds: tuple[str, ...]
    build: Callable[[dict, int], nn.Module]
    defaults: dict = field(default_factory=dict)  # config keys this family reads, with their defaults
    segment_aware: bool = False
    realtime: bool = True
    onnx_name: str = "net"
    # int8 exports keep every node before the first one of this submodule in fp32 ("" = quantize everything).
    # hidden: MotionNet regresses flow and the temporal net's first layers read it. Zoo checkpoint, 64 training
    # windows, top-1 agreement with fp32: all int8 0.44, MotionNet fp32 0.63, MotionNet + temporal stem and
    # blocks 0-1 fp32 0.92 (12.8 MB instead of 22.4 MB in fp32); the 15-epoch zoo build 0.97, its folds 0.92-1.0.
    int8_from: str = ""


def _convfusion(cfg: dict, n: int) -> nn.Module:
    from train.families.convfusion import ConvFusionNet

    w = None if cfg.get("init_weights") == "none" else "imagenet"
    return ConvFusionNet(n, cfg["flow_length"], cfg["fuse_at"], cfg["fusion_method"], cfg["score_fusion"],
                         cfg["temporal_fusion"], cfg["dropout"], spatial_weights=w, temporal_weights=w)


def _hidden(cfg: dict, n: int) -> nn.Module:
    from train.families.hidden import HiddenTemporal

    w = None if cfg.get("init_weights") == "none" else "imagenet"
    return HiddenTemporal(n, cfg["stack_length"], cfg["motion_width"], cfg["dropout"], temporal_weights=w)


def _i3d(cfg: dict, n: int) -> nn.Module:
    from train.families.i3d import I3DLite0

    return I3DLite0(n, cfg["clip_length"], cfg["inflate"], None if cfg["init_weights"] == "none" else "imagenet",
                    cfg["dropout"], time_pool=cfg.get("time_pool", "none"))  # configs from before time_pool: none


def _r2plus1d(cfg: dict, n: int) -> nn.Module:
    from train.families.r2plus1d import build_r2plus1d

    return build_r2plus1d(n, tiny=bool(cfg.get("tiny")))


_COMMON = {"dropout": 0.5, "init_weights": "imagenet", "tiny": False}
FAMILIES = {
    "convfusion": Family("convfusion", ("frame", "flow_stack"), _convfusion,
                         {**_COMMON, "flow_length": 10, "fuse_at": "block", "fusion_method": "conv",
                          "score_fusion": True, "temporal_fusion": True, "segments": 3, "lr": 3e-4},
                         segment_aware=True, onnx_name="convfusion"),
    "hidden": Family("hidden", ("frame_stack",), _hidden,
                     {**_COMMON, "stack_length": 10, "motion_width": 32, "segments": 3, "lr": 3e-4,
                      "motion_epochs": 6, "motion_lr": 1e-3, "motion_loss_weight": 0.1, "bound": 20.0},
                     onnx_name="hidden", int8_from="temporal._blocks.2"),
    "i3d": Family("i3d", ("clip",), _i3d,
                  {**_COMMON, "clip_length": 8, "clip_stride": 1, "inflate": "all_dw", "time_pool": "none",
                   "segments": 1, "lr": 1e-3},
                  onnx_name="i3d"),
    "r2plus1d": Family("r2plus1d", ("clip",), _r2plus1d,
                       {**_COMMON, "clip_length": 8, "clip_stride": 1, "init_weights": "none", "segments": 1,
                        "lr": 1e-3}, realtime=False, onnx_name="r2plus1d"),
}


def input_params(cfg: dict) -> dict:
    """The window-shape parameters of train.families.data from a config."""
    return {"flow_length": int(cfg.get("flow_length", 10)), "clip_length": int(cfg.get("clip_length", 8)),
            "clip_stride": int(cfg.get("clip_stride", 1)), "stack_length": int(cfg.get("stack_length", 10))}
