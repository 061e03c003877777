"""Training loop pieces: TSN consensus wrapper, one epoch, validation, checkpoints, CSV log and curves."""
from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from train.models import set_partial_bn


class SegmentConsensus(nn.Module):
    """Runs the backbone on (B, K, C, S, S) snippets and averages the K logits (TSN 'avg' consensus)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, k = x.shape[:2]
        logits = self.backbone(x.flatten(0, 1))
        return logits.view(b, k, -1).mean(dim=1)


def is_main_process() -> bool:
    return not dist.is_available() or not dist.is_initialized() or dist.get_rank() == 0


def cosine_lambda(total_steps: int, warmup_steps: int):
    """LR multiplier per step: linear warm-up then cosine decay to 0."""

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def set_train_mode(model: nn.Module, bn_mode: str) -> None:
    """model.train(), then TSN partial BN ('partial') or all BN frozen ('frozen'); 'train' updates all."""
    model.train()
    backbone = model.module.backbone if hasattr(model, "module") else model.backbone
    if bn_mode == "partial":
        set_partial_bn(backbone)
    elif bn_mode == "frozen":
        for m in backbone.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()


def train_one_epoch(model, loader, optimizer, scheduler, scaler, device, *, bn_mode: str, clip_grad: float,
                    progress: bool, epoch: int, max_steps: int = 0) -> dict:
    from tqdm import tqdm

    set_train_mode(model, bn_mode)
    criterion = nn.CrossEntropyLoss()
    total_loss, correct, seen = 0.0, 0, 0
    use_amp = device.type == "cuda"
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", disable=not (progress and is_main_process()), leave=False)
    for step, (x, y) in enumerate(bar):
        if max_steps and step >= max_steps:
            break
        x, y = x.to(device, non_blocking=True), torch.as_tensor(y).to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            logits = model(x)
            loss = criterion(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if clip_grad > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        total_loss += float(loss.detach()) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.2f}")
    return _reduce({"loss": total_loss, "correct": correct, "seen": seen}, device)


@torch.no_grad()
def validate(model, loader, device) -> dict:
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), torch.as_tensor(y).to(device)
        logits = model(x).float()
        total_loss += float(criterion(logits, y))
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
    return _reduce({"loss": total_loss, "correct": correct, "seen": seen}, device)


def _reduce(sums: dict, device) -> dict:
    if dist.is_available() and dist.is_initialized():
        t = torch.tensor([sums["loss"], sums["correct"], sums["seen"]], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        sums = {"loss": float(t[0]), "correct": int(t[1]), "seen": int(t[2])}
    n = max(1, sums["seen"])
    return {"loss": sums["loss"] / n, "acc": sums["correct"] / n, "seen": sums["seen"]}


def save_checkpoint(path: Path, *, model, optimizer, scheduler, scaler, epoch: int, meta: dict, history: list) -> None:
    """Atomic save; only tensors and plain Python values, so torch.load(weights_only=True) reads it."""
    net = model.module if hasattr(model, "module") else model
    state = {
        "model": net.backbone.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
        "meta": meta,
        "history": history,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "meta" not in ckpt:
        raise ValueError(f"{path}: not a twostream training checkpoint (needs 'model' and 'meta')")
    return ckpt


LOG_FIELDS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")


def write_log(out_dir: Path, history: list[dict]) -> None:
    """log.csv and curves.png (loss and accuracy per epoch) from the full history."""
    with open(out_dir / "log.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        w.writeheader()
        for row in history:
            w.writerow({k: row.get(k, "") for k in LOG_FIELDS})
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [r["train_loss"] for r in history], label="train")
    ax2.plot(epochs, [r["train_acc"] for r in history], label="train")
    if any(r.get("val_loss") not in (None, "") for r in history):
        ax1.plot(epochs, [r["val_loss"] for r in history], label="val")
        ax2.plot(epochs, [r["val_acc"] for r in history], label="val")
    ax1.set_xlabel("epoch"), ax1.set_ylabel("loss"), ax1.legend()
    ax2.set_xlabel("epoch"), ax2.set_ylabel("accuracy"), ax2.set_ylim(0, 1.02), ax2.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "curves.png", dpi=80)
    plt.close(fig)


def now() -> float:
    return time.perf_counter()
