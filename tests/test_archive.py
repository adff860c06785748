"""The built archives hold what the worker needs, and a failed archive step leaves nothing."""

import json
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from handlers import contracts
from models.registry import SPECS
from tests.conftest import SERVED_PAIRS
from training.export import FORMATS
from tsforge.packaging import archive, build

DIABETES = SPECS["diabetes"]
KINDS = {spec.contract.kind for spec in SPECS.values()} | set(contracts.CONTRACTS)


@pytest.mark.parametrize("model, runtime", SERVED_PAIRS)
def test_archive_holds_model_handler_package_config_and_card(built, model, runtime):
    fmt, spec, handler = FORMATS[runtime], SPECS[model], "handler.py"
    name, serialized = build.served_name(SPECS[model], fmt.name), f"{model}{fmt.shipped_suffix}"
    kind = spec.contract.kind
    with zipfile.ZipFile(built.archive(name)) as z:
        names = set(z.namelist())
        assert {
            serialized,
            handler,
            "handlers/base.py",
            "handlers/codec.py",
            "handlers/runtime.py",
            "handlers/contracts.py",
            f"handlers/codecs/{kind}.py",
            "model-config.yaml",
            "model_card.json",
        } <= names
        # Only the code it runs: no other kind's codec.
        assert not {f"handlers/codecs/{other}.py" for other in KINDS - {kind}} & names
        assert not any(n.endswith((".pyc", ".onnx" if runtime == "torchscript" else ".pt")) for n in names)
        assert not any("__pycache__" in n for n in names)
        manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))
        config = yaml.safe_load(z.read("model-config.yaml"))
        card = json.loads(z.read("model_card.json"))
    model_entry = manifest["model"]
    assert (model_entry["modelName"], model_entry["serializedFile"], model_entry["handler"]) == (
        name,
        serialized,
        handler,
    )
    assert "modelFile" not in model_entry  # an exported graph only: the worker needs no model code
    assert {"batchSize", "maxBatchDelay", "minWorkers", "maxWorkers", "responseTimeout"} <= set(config)
    assert config["batchSize"] == spec.serving.batch_size and config["handler"]["threads"] >= 1
    declared = contracts.to_yaml(spec.contract)  # kind, features, labels, file names
    assert {key: config["handler"][key] for key in declared} == declared
    assert (card["name"], card["runtime"]) == (name, runtime)
    assert card["train_config"] is None if spec.train is None else card["train_config"]["seed"] == 42
    for field in contracts.FILE_FIELDS:  # files the contract names ship beside the model
        if hasattr(spec.contract, field):
            assert Path(getattr(spec.contract, field)).name in names
    assert card["kind"] == kind and card["schema"]["input"] and card["schema"]["output"]
    assert card["exported_with"]["torch"].startswith("2.13.0")
    assert ("onnxruntime" in card["exported_with"]) == (runtime != "torchscript")
    parity, quality = card["gates"]
    assert (parity["gate"], quality["gate"]) == ("parity", "quality") and parity["passed"] and quality["passed"]
    if fmt.tolerance is not None:
        assert parity["threshold"] == fmt.tolerance and parity["value"] <= fmt.tolerance


def test_both_formats_come_from_one_training_run(built):
    for model in SPECS:
        names = [build.served_name(SPECS[model], fmt) for fmt in SPECS[model].formats]
        cards = [json.loads(zipfile.ZipFile(built.archive(n)).read("model_card.json")) for n in names]
        assert cards[0]["metrics"] == cards[1]["metrics"] and cards[0]["best_epoch"] == cards[1]["best_epoch"]


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
        archive.build_archive(DIABETES, built.exported("diabetes"), {}, store)
    assert list(store.iterdir()) == []  # neither diabetes.mar nor the temporary folder


@pytest.mark.parametrize("runtime", ["torchscript", "onnx"])
def test_build_skips_an_archive_that_is_up_to_date(built, runtime):
    from tsforge.packaging import build

    target = built.archive(build.served_name(SPECS["diabetes"], runtime))
    before = target.stat().st_mtime_ns
    path, rebuilt = build.build(DIABETES, store=built.store, artifacts=built.artifacts, progress=False, runtime=runtime)
    assert (path, rebuilt) == (target, False)
    assert target.stat().st_mtime_ns == before
