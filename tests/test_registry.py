"""One file per model: discovery, fingerprints that cover exactly what a model depends on, and
packaging weights trained elsewhere with the same gates."""

import shutil
from pathlib import Path

import pytest
import torch

from models.registry import SPECS, module_file
from training.weights import WeightsError
from tsforge.packaging import build
from tsforge.paths import EXAMPLES, HANDLERS, ROOT


def test_every_model_module_is_discovered_with_an_example_request():
    assert SPECS and all(module_file(spec).parent == ROOT / "models" for spec in SPECS.values())
    for spec in SPECS.values():
        assert (EXAMPLES / spec.example).is_file(), spec.name


def test_a_model_depends_on_its_own_module_and_on_no_other_model():
    modules = {module_file(spec) for spec in SPECS.values()}
    for spec in SPECS.values():
        sources = set(build.train_sources(spec))
        assert module_file(spec) in sources and not (modules - {module_file(spec)}) & sources
    # Shared preprocessing that training uses is part of the model's own fingerprint.
    assert HANDLERS / "digit_transform.py" in build.train_sources(SPECS["digits"])


def edited(monkeypatch, target: Path) -> None:
    """Make `target` read as if a line had been added to it."""
    read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda p: read(p) + (b"\n# edited\n" if p == target else b""))


def fingerprints() -> dict[str, str]:
    return {name: build.fingerprint(build.train_sources(spec), name) for name, spec in SPECS.items()}


@pytest.mark.parametrize("name", list(SPECS))
def test_editing_one_model_module_changes_only_that_models_fingerprint(monkeypatch, name):
    before = fingerprints()
    edited(monkeypatch, module_file(SPECS[name]))
    after = fingerprints()
    assert {n for n in SPECS if after[n] != before[n]} == {name}


def test_editing_a_model_rebuilds_it_alone(built, tmp_path, monkeypatch):
    store, artifacts = tmp_path / "store", tmp_path / "artifacts"
    shutil.copytree(built.store, store)
    shutil.copytree(built.artifacts, artifacts)
    cheapest = min((s for s in SPECS.values() if s.train), key=lambda s: len(s.splits(s.train.seed).train))

    def rebuilt() -> set[str]:
        return {
            name
            for name, spec in SPECS.items()
            if build.build(spec, store=store, artifacts=artifacts, progress=False, runtime="torchscript")[1]
        }

    rebuilt()  # up to date with the sources as they are now
    assert rebuilt() == set()
    edited(monkeypatch, module_file(cheapest))
    assert rebuilt() == {cheapest.name}


def test_weights_trained_elsewhere_are_packaged_with_the_same_gates(built, tmp_path):
    from safetensors.torch import save_file

    spec = SPECS["diabetes"]
    trained = torch.load(built.artifacts / "diabetes" / "checkpoint.pt", weights_only=True)
    weights = tmp_path / "elsewhere.safetensors"
    save_file({k: v.contiguous() for k, v in trained["state_dict"].items()}, str(weights))
    store, artifacts = tmp_path / "store", tmp_path / "artifacts"
    path, rebuilt = build.build(spec, store=store, artifacts=artifacts, progress=False, weights=weights)
    assert rebuilt and path == store / "diabetes.mar"
    shipped = spec.formats[0]  # what build() builds by default
    gates = build.load_gates(artifacts / "diabetes", shipped)
    assert [g.gate for g in gates] == ["parity", "quality"] and all(g.passed for g in gates)
    card = build.model_card(spec, artifacts / "diabetes", "1.0", shipped, gates)
    assert card["train_config"] is None and card["best_epoch"] == 0
    ours = build.model_card(spec, built.artifacts / "diabetes", "1.0", shipped, gates)
    assert card["metrics"]["test"]["r2"] == pytest.approx(ours["metrics"]["test"]["r2"], abs=1e-6)
    assert build.build(spec, store=store, artifacts=artifacts, progress=False, weights=weights)[1] is False


def test_weights_that_do_not_fit_stop_the_build_with_the_reason(built, tmp_path):
    other = tmp_path / "digits.pt"
    shutil.copy(built.artifacts / "digits" / "checkpoint.pt", other)
    with pytest.raises(WeightsError, match=r"does not fit the diabetes network: Error\(s\) in loading state_dict"):
        build.build(SPECS["diabetes"], store=tmp_path / "s", artifacts=tmp_path / "a", progress=False, weights=other)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="is not a readable state_dict or safetensors file"):
        build.build(SPECS["diabetes"], store=tmp_path / "s", artifacts=tmp_path / "a", weights=tmp_path / "junk.pt")
    # A TorchScript file runs its code when it loads: read only when it is the model's pinned file.
    scripted = tmp_path / "scripted.pt"
    shutil.copy(built.exported("diabetes"), scripted)
    with pytest.raises(WeightsError, match="is a TorchScript file, which runs code when it loads"):
        build.build(SPECS["diabetes"], store=tmp_path / "s", artifacts=tmp_path / "a", weights=scripted)
    assert not list((tmp_path / "s").glob("*.mar"))
