"""A short real training run: the loss falls, the artifacts land, the run is reproducible."""

import json
from dataclasses import replace

import torch

from models.registry import SPECS
from training.train import CHECKPOINT, CURVES, METRICS, load_checkpoint, train

DIGITS, DIABETES = SPECS["digits"], SPECS["diabetes"]


def test_a_short_digits_run_on_a_slice_lowers_the_loss_and_writes_artifacts(tmp_path):
    cfg = replace(DIGITS.train, epochs=3, limit=256, patience=10)
    result = train(DIGITS, tmp_path, cfg, progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    metrics = json.loads((tmp_path / METRICS).read_text())
    assert {"accuracy", "precision_macro", "recall_macro", "f1_macro"} <= set(metrics["test"])
    assert len(metrics["test"]["confusion_matrix"]) == 10
    assert (tmp_path / CURVES).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_checkpoint_rebuilds_the_best_model_from_its_own_config(tmp_path):
    cfg = replace(DIABETES.train, epochs=15)
    result = train(DIABETES, tmp_path, cfg, progress=False)
    model, saved_cfg = load_checkpoint(tmp_path / CHECKPOINT, DIABETES)
    assert saved_cfg == cfg
    x = result.splits.test.x
    assert torch.equal(model(x), result.model.eval()(x))
    metrics = json.loads((tmp_path / METRICS).read_text())
    assert {"mse", "mae", "r2"} <= set(metrics["test"])
    assert metrics["best_epoch"] == result.best_epoch


def test_training_is_reproducible_with_the_same_seed(tmp_path):
    cfg = replace(DIABETES.train, epochs=10)
    a = train(DIABETES, tmp_path / "a", cfg, progress=False)
    b = train(DIABETES, tmp_path / "b", cfg, progress=False)
    assert [h["val_loss"] for h in a.history] == [h["val_loss"] for h in b.history]
    for (name, ta), tb in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(ta, tb), name


def test_early_stopping_stops_before_the_epoch_budget(tmp_path):
    cfg = replace(DIABETES.train, epochs=500, patience=3, lr=3e-2)
    result = train(DIABETES, tmp_path, cfg, progress=False)
    assert len(result.history) < 500
    assert len(result.history) - result.best_epoch == 3
