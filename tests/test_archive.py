"""The built archives hold what the worker needs, and a failed archive step leaves nothing."""

import json
import subprocess
import zipfile

import pytest
import yaml

from training.specs import DIABETES
from tsforge import archive


@pytest.mark.parametrize("name, handler", [("digits", "digits_handler.py"), ("diabetes", "diabetes_handler.py")])
def test_archive_holds_model_handler_package_config_and_card(built, name, handler):
    with zipfile.ZipFile(built.archive(name)) as z:
        names = set(z.namelist())
        assert {
            f"{name}.pt",
            handler,
            "handlers/base.py",
            "handlers/codec.py",
            "model-config.yaml",
            "model_card.json",
        } <= names
        assert not any(n.endswith(".pyc") or "__pycache__" in n for n in names)
        manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))
        config = yaml.safe_load(z.read("model-config.yaml"))
        card = json.loads(z.read("model_card.json"))
    assert manifest["model"]["serializedFile"] == f"{name}.pt" and manifest["model"]["handler"] == handler
    assert "modelFile" not in manifest["model"]  # TorchScript only: the worker needs no model code
    assert {"batchSize", "maxBatchDelay", "minWorkers", "maxWorkers", "responseTimeout"} <= set(config)
    assert config["batchSize"] > 1 and config["handler"]["threads"] >= 1
    assert [g["gate"] for g in card["gates"]] == ["parity", "quality"] and all(g["passed"] for g in card["gates"])
    assert card["train_config"]["seed"] == 42


def test_digits_archive_ships_its_labels(built):
    with zipfile.ZipFile(built.archive("digits")) as z:
        assert json.loads(z.read("index_to_name.json")) == {str(i): str(i) for i in range(10)}


def test_a_failed_archiver_run_leaves_no_partial_archive(built, tmp_path, monkeypatch):
    def broken(cmd, **kwargs):
        out = cmd[cmd.index("--export-path") + 1]
        (tmp_path / "seen").write_text(out)
        with open(f"{out}/diabetes.mar", "wb") as f:
            f.write(b"PK half")  # what an interrupted write would leave
        return subprocess.CompletedProcess(cmd, 1, "", "disk full")

    monkeypatch.setattr(archive.subprocess, "run", broken)
    store = tmp_path / "store"
    with pytest.raises(RuntimeError, match=r"torch-model-archiver failed for diabetes \(exit 1\):\ndisk full"):
        archive.build_archive(DIABETES, built.artifacts / "diabetes" / "diabetes.pt", {}, store)
    assert list(store.iterdir()) == []  # neither diabetes.mar nor the temporary folder


def test_build_skips_an_archive_that_is_up_to_date(built):
    from tsforge import build

    before = built.archive("diabetes").stat().st_mtime_ns
    path, rebuilt = build.build(DIABETES, store=built.store, artifacts=built.artifacts, progress=False)
    assert (path, rebuilt) == (built.archive("diabetes"), False)
    assert built.archive("diabetes").stat().st_mtime_ns == before
