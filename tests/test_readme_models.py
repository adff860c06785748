"""The README's colour photo classifier, run as written: a model module of its own, weights
trained elsewhere packaged with `weights=` (what `tsforge build --weights` passes), the same
gates, and a photo answered by the archive's own handler."""

from __future__ import annotations

import importlib.util
import re
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from handlers.codec import Payload
from handlers.codecs import image as codec
from tests.conftest import Built
from tests.test_handler_inprocess import load, run
from tsforge.packaging import build
from tsforge.paths import ROOT

COLOURS = {"cat": (200, 90, 40), "dog": (40, 90, 200)}  # what tells the generated photos apart


def block(marker: str) -> str:
    readme = (ROOT / "README.md").read_text()
    return re.search(rf"<!-- model:{marker} -->\n```python\n(.*?)```", readme, re.S).group(1)


def photo(label: str, rng: np.random.Generator) -> Image.Image:
    """A noisy photo of some size and aspect, a blob of the label's colour on a grey background."""
    w, h = int(rng.integers(60, 200)), int(rng.integers(60, 200))
    noise = rng.integers(60, 180, (h, w, 3), dtype=np.uint8)
    image = Image.fromarray(noise, "RGB")
    r = min(w, h) // 3
    x, y = w // 2 + int(rng.integers(-r // 3, r // 3 + 1)), h // 2 + int(rng.integers(-r // 3, r // 3 + 1))
    ImageDraw.Draw(image).ellipse((x - r, y - r, x + r, y + r), fill=COLOURS[label])
    return image


@pytest.fixture
def pets(tmp_path, monkeypatch):
    """The README's module, imported from its own file, reading a folder of generated photos."""
    folder = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for label in COLOURS:
        (folder / label).mkdir(parents=True)
        for i in range(30):
            photo(label, rng).save(folder / label / f"{i}.{'jpg' if i % 2 else 'png'}")
    path = tmp_path / "pets.py"
    path.write_text(block("colour"))
    spec = importlib.util.spec_from_file_location("readme_pets", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "readme_pets", module)
    spec.loader.exec_module(module)
    module.PHOTOS = folder
    return module


def trained_elsewhere(module, path):
    """A plain training loop outside tsforge: only its state_dict is handed over."""
    torch.manual_seed(0)
    splits = module.SPEC.splits(module.SPEC.seed)
    net = module.Pets(module.PetsConfig())
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(60):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(net(splits.train.x), splits.train.y).backward()
        optimiser.step()
    torch.save(net.state_dict(), path)


def test_the_readme_colour_model_builds_from_weights_and_answers_photos(pets, tmp_path):
    weights = tmp_path / "pets.pt"
    trained_elsewhere(pets, weights)
    store, artifacts = tmp_path / "store", tmp_path / "artifacts"
    for runtime in pets.SPEC.formats:
        path, rebuilt = build.build(
            pets.SPEC, store=store, artifacts=artifacts, progress=False, weights=weights, runtime=runtime
        )
        assert rebuilt and path.is_file()
        gates = build.load_gates(artifacts / "pets", runtime)
        assert [g.gate for g in gates] == ["parity", "quality"] and all(g.passed for g in gates), gates
    handler, ctx = load(Built(store, artifacts), "pets", tmp_path / "unpacked")
    assert handler.contract == pets.CONTRACT  # the preprocessing, as the archive recorded it
    rng = np.random.default_rng(1)
    bodies = []
    for label in COLOURS:
        image = photo(label, rng)
        image.save(buffer := tmp_path / f"{label}.webp")
        bodies.append(buffer.read_bytes())
    answers, statuses = run(handler, ctx, [{"body": b} for b in bodies])
    assert statuses == [200, 200] and [a["label"] for a in answers] == list(COLOURS)
    # The handler and the build read a photo alike: the codec is the one road in.
    rows = codec.decode_request(Payload(bodies[0]), handler.contract, handler.limits).rows
    assert rows.shape == (1, 3, 64, 64) and rows.dtype == np.float32
