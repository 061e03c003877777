"""The training loop every family shares: K-segment windows, AdamW + warm-up/cosine, BN adapting, grad clip.

Writes OUT/last.pt ({"model", "meta"}; meta holds the family, its config, classes, split, data,
commit and command, so export rebuilds the same network) and OUT/log.csv / curves.png
(train.engine.write_log). The held-out numbers use last.pt: choosing an epoch by the validation
actors would leak them into the result. `hidden` first trains MotionNet alone without labels
(motion_epochs), then the stack end to end with cross-entropy + motion_loss_weight * the
unsupervised loss (Zhu et al.'s multi-task fine-tuning).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from train.engine import cosine_lambda, write_log
from train.families.data import WindowDataset
from train.families.registry import FAMILIES, input_params


def flatten_segments(batch: dict, kinds) -> tuple[list[torch.Tensor], int]:
    """{kind: (B, K, ...)} -> per kind (B*K, ...) in `kinds` order, and K."""
    k = next(iter(batch.values())).shape[1]
    return [batch[kind].flatten(0, 1) for kind in kinds], k


def forward_segments(model: nn.Module, family, batch: dict) -> torch.Tensor:
    """Logits (B, C) of K-segment samples: the model's own temporal fusion, or the TSN average."""
    xs, k = flatten_segments(batch, family.kinds)
    if family.segment_aware:
        model.segments = k
        try:
            return model(*xs)
        finally:
            model.segments = 1
    logits = model(*xs)
    return logits.view(-1, k, logits.shape[-1]).mean(dim=1)


def _loaders(extracted, index, split, family, cfg, batch_size, seed, segments):
    params = input_params(cfg)
    mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    train_set = WindowDataset(extracted, index, split.train, family.kinds, segments=segments, train=True, mean=mean,
                              std=std, seed=seed, **params)
    val_set = (WindowDataset(extracted, index, split.val, family.kinds, segments=segments, train=False, mean=mean,
                             std=std, seed=seed, **params) if split.val else None)
    g = torch.Generator().manual_seed(seed)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=g,
                                               drop_last=len(train_set) > batch_size)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=batch_size) if val_set else None
    return train_set, train_loader, val_loader


def pretrain_motion(model, extracted, index, split, cfg, *, epochs: int, batch_size: int, seed: int, log,
                    max_steps: int = 0) -> list[float]:
    """Hidden family, stage 1: MotionNet on the training videos' frames, no labels. Returns the loss per epoch."""
    from train.families.motion import unsupervised_loss

    family = FAMILIES["hidden"]
    train_set, loader, _ = _loaders(extracted, index, split, family, cfg, batch_size, seed, segments=4)
    motion = model.motion
    opt = torch.optim.AdamW(motion.parameters(), lr=cfg["motion_lr"], weight_decay=1e-4)
    steps = len(loader) if not max_steps else min(len(loader), max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_lambda(max(1, epochs * steps), steps))
    losses = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        train_set.set_epoch(1000 + epoch)
        motion.train()
        total, n = 0.0, 0
        for step, (batch, _) in enumerate(loader):
            if max_steps and step >= max_steps:
                break
            x = batch["frame_stack"].flatten(0, 1)
            loss = unsupervised_loss(motion(x), x, cfg["stack_length"], cfg["bound"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(motion.parameters(), 20.0)
            opt.step()
            sched.step()
            total, n = total + float(loss.detach()) * len(x), n + len(x)
        losses.append(total / max(1, n))
        log(f"motion epoch={epoch} unsup_loss={losses[-1]:.5f} seconds={time.perf_counter() - t0:.1f}")
    return losses


def train_family(name: str, cfg: dict, extracted: str | Path, index: dict, split, out: Path, *, epochs: int,
                 batch_size: int, seed: int = 0, meta: dict | None = None, spatial_init: str | None = None,
                 temporal_init: str | None = None, motion_init: str | None = None, max_steps: int = 0,
                 threads: int = 0, log=print) -> dict:
    """Train one family on `split`; returns {"history", "checkpoint"}."""
    family = FAMILIES[name]
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    np.random.seed(seed)
    num_classes = len(split.classes)
    model = family.build(cfg, num_classes)
    if name == "convfusion" and (spatial_init or temporal_init):
        if not (spatial_init and temporal_init):
            raise ValueError("convfusion initialises from both late streams: give --spatial-init and --temporal-init")
        model.load_streams(spatial_init, temporal_init)
    if name == "hidden" and temporal_init:
        from train.models import load_state_dict_file

        model.temporal.load_state_dict(load_state_dict_file(temporal_init), strict=True)
    out.mkdir(parents=True, exist_ok=True)
    history: list[dict] = []
    extra = {}
    if name == "hidden":
        if motion_init:
            from train.models import load_state_dict_file

            state = load_state_dict_file(motion_init)
            model.motion.load_state_dict({k[len("motion."):]: v for k, v in state.items() if k.startswith("motion.")}
                                         if any(k.startswith("motion.") for k in state) else state, strict=True)
        elif cfg["motion_epochs"] > 0:
            extra["motion_losses"] = pretrain_motion(model, extracted, index, split, cfg, epochs=cfg["motion_epochs"],
                                                     batch_size=batch_size, seed=seed, log=log, max_steps=max_steps)
            torch.save({"model": model.motion.state_dict(), "meta": {"losses": extra["motion_losses"]}},
                       out / "motion.pt")

    train_set, loader, val_loader = _loaders(extracted, index, split, family, cfg, batch_size, seed, cfg["segments"])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg["lr"], weight_decay=1e-4)
    steps = len(loader) if not max_steps else min(len(loader), max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_lambda(max(1, epochs * steps), steps))
    criterion = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        t0 = time.perf_counter()
        train_set.set_epoch(epoch)
        model.train()
        total, correct, seen = 0.0, 0, 0
        for step, (batch, y) in enumerate(loader):
            if max_steps and step >= max_steps:
                break
            y = torch.as_tensor(y)
            logits = forward_segments(model, family, batch)
            loss = criterion(logits, y)
            if name == "hidden" and cfg["motion_loss_weight"] > 0:
                from train.families.motion import unsupervised_loss

                x = batch["frame_stack"].flatten(0, 1)
                loss = loss + cfg["motion_loss_weight"] * unsupervised_loss(model.last_flows, x, cfg["stack_length"],
                                                                           cfg["bound"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 20.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        row = {"epoch": epoch, "lr": round(opt.param_groups[0]["lr"], 8), "train_loss": round(total / max(1, seen), 5),
               "train_acc": round(correct / max(1, seen), 4)}
        if val_loader is not None:
            model.eval()
            vc, vn, vl = 0, 0, 0.0
            with torch.no_grad():
                for batch, y in val_loader:
                    y = torch.as_tensor(y)
                    logits = forward_segments(model, family, batch)
                    vl += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
                    vc += int((logits.argmax(1) == y).sum())
                    vn += len(y)
            row.update(val_loss=round(vl / max(1, vn), 5), val_acc=round(vc / max(1, vn), 4))
        row["seconds"] = round(time.perf_counter() - t0, 1)
        history.append(row)
        write_log(out, history)
        log(" ".join(f"{k}={v}" for k, v in row.items()))
        _save(out / "last.pt", model, {**(meta or {}), "family": name, "config": cfg, "classes": list(split.classes),
                                       "history": history, **extra})
    return {"history": history, "checkpoint": out / "last.pt", "model": model}


def _save(path: Path, model: nn.Module, meta: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model.state_dict(), "meta": meta}, tmp)
    os.replace(tmp, path)


def load_family_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild a family network from OUT/last.pt (weights_only load: checkpoints are untrusted input)."""
    from train.engine import load_checkpoint

    ckpt = load_checkpoint(path)
    meta = ckpt["meta"]
    name = meta.get("family")
    if name not in FAMILIES:
        raise ValueError(f"{path}: not a family checkpoint (family = {name!r})")
    cfg = dict(meta["config"])
    cfg["init_weights"] = "none"  # the checkpoint holds every weight
    model = FAMILIES[name].build(cfg, len(meta["classes"]))
    model.load_state_dict(ckpt["model"], strict=True)
    if name == "i3d":  # exported and evaluated as 2D ops (no Conv3d in the graph)
        from train.families.i3d import set_impl

        set_impl(model, "2d")
    return model.eval(), meta
