"""Train one model: seeded, AdamW + ReduceLROnPlateau, early stopping, best checkpoint.

tsforge train --model digits      # writes artifacts/digits/{checkpoint.pt,metrics.json,curves.png}
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from training.data import Split, Splits
from training.files import write_json
from training.plots import plot_curves
from training.specs import ModelSpec, TrainConfig

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
CURVES = "curves.png"


@dataclass
class TrainResult:
    model: nn.Module
    splits: Splits
    history: list[dict[str, float]]
    best_epoch: int
    val_metrics: dict[str, Any]
    test_metrics: dict[str, Any]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def train_one_epoch(
    model: nn.Module,
    spec: ModelSpec,
    data: Split,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    gen: torch.Generator,
) -> float:
    model.train()
    total = 0.0
    for idx in torch.randperm(len(data), generator=gen).split(batch_size):
        optimizer.zero_grad()
        x = data.x[idx] if spec.augment is None else spec.augment(data.x[idx], gen)
        loss = spec.compute_loss(model, x, data.y[idx])
        loss.backward()
        optimizer.step()
        total += loss.item() * len(idx)
    return total / len(data)


@torch.no_grad()
def score(spec: ModelSpec, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
    """The spec's torchmetrics for a split's outputs (from any runtime) against its targets."""
    metrics = spec.metrics()
    metrics.update(outputs, targets)
    return {name: value.tolist() if value.ndim else value.item() for name, value in metrics.compute().items()}


@torch.no_grad()
def evaluate(model: nn.Module, spec: ModelSpec, data: Split) -> dict[str, Any]:
    """Loss and the spec's torchmetrics on a whole split, in eval mode ({} without targets)."""
    model.eval()
    if data.y is None:
        return {}
    loss = (
        {} if spec.custom_metrics and spec.loss is None else {"loss": spec.compute_loss(model, data.x, data.y).item()}
    )
    return {**loss, **score(spec, spec.run(model, data.x), data.y)}


def train(spec: ModelSpec, out_dir: Path, config: TrainConfig | None = None, progress: bool = True) -> TrainResult:
    """Fit `spec`'s model, keep the best epoch by validation loss, write its artifacts."""
    cfg = config or spec.train
    if cfg is None:
        raise ValueError(f"{spec.name} declares no training: package its weights with `tsforge build --weights FILE`")
    seed_everything(cfg.seed)
    splits = spec.splits(cfg.seed)
    train_split = splits.train if cfg.limit is None else Split(splits.train.x[: cfg.limit], splits.train.y[: cfg.limit])

    model_config = spec.model_config()
    model = spec.build(model_config)
    spec.prepare(model, train_split)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # Halve the step when validation stalls, well before early stopping gives up.
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(1, cfg.patience // 3))
    gen = torch.Generator().manual_seed(cfg.seed)

    out_dir.mkdir(parents=True, exist_ok=True)
    best_loss, best_epoch, best_state, history = float("inf"), 0, None, []
    bar = tqdm(
        range(1, cfg.epochs + 1),
        desc=f"train {spec.name}",
        unit="epoch",
        disable=not progress or not sys.stderr.isatty(),
        mininterval=1.0,
    )
    for epoch in bar:
        train_loss = train_one_epoch(model, spec, train_split, optimizer, cfg.batch_size, gen)
        val = evaluate(model, spec, splits.val)
        scheduler.step(val["loss"])
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val["loss"],
                spec.gate_metric: val[spec.gate_metric],
                "lr": optimizer.param_groups[0]["lr"],
            }
        )
        if val["loss"] < best_loss:
            best_loss, best_epoch = val["loss"], epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val['loss']:.4f}", best=best_epoch)
        if epoch - best_epoch >= cfg.patience:
            break
    bar.close()

    model.load_state_dict(best_state)
    result = TrainResult(
        model, splits, history, best_epoch, evaluate(model, spec, splits.val), evaluate(model, spec, splits.test)
    )
    save_checkpoint(out_dir / CHECKPOINT, spec, model_config, cfg, model, best_epoch)
    write_json(
        out_dir / METRICS,
        {"best_epoch": best_epoch, "val": result.val_metrics, "test": result.test_metrics, "history": history},
    )
    plot_curves(history, spec.gate_metric, out_dir / CURVES, title=f"{spec.name}: best epoch {best_epoch}")
    return result


def save_checkpoint(
    path: Path, spec: ModelSpec, model_config: Any, cfg: TrainConfig | None, model: nn.Module, epoch: int
) -> None:
    """state_dict beside the configs that built it, so the checkpoint rebuilds its own model
    (`cfg` is None for weights trained elsewhere)."""
    payload = {
        "model": spec.name,
        "model_config": asdict(model_config),
        "train_config": asdict(cfg) if cfg else None,
        "epoch": epoch,
        "state_dict": model.state_dict(),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, spec: ModelSpec) -> tuple[nn.Module, TrainConfig | None]:
    """The model and the training settings that produced it (None: weights from elsewhere)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model = spec.build(replace(spec.model_config(), **payload["model_config"]))
    model.load_state_dict(payload["state_dict"])
    cfg = payload["train_config"]
    return model.eval(), TrainConfig(**cfg) if cfg else None
