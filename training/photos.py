"""Labelled photos for an image model's splits, read through the image codec exactly as a served
request is: what the gates score is what the server feeds the model.

    x, y = image_folder(Path("data/pets"), CONTRACT)   # data/pets/<label>/*.jpg|png|webp

Its own module, imported only by the models that read photos, so that the image codec is part
of their fingerprint and of no other model's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from handlers.codec import Limits, Payload, RequestError
from handlers.codecs import image
from handlers.contracts import ImageContract

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def image_folder(folder: Path, contract: ImageContract) -> tuple[np.ndarray, np.ndarray]:
    """Photos in `folder/<label>/` -> (model inputs, label indices in the contract's order)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder of photos (one subfolder per label)")
    extra = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in contract.labels)
    if extra:
        raise ValueError(f"{folder} has folders that are not labels of the contract: {', '.join(extra)}")
    inputs, labels = [], []
    for index, label in enumerate(contract.labels):
        files = sorted(p for p in (folder / label).glob("*") if p.suffix.lower() in SUFFIXES)
        if not files:
            raise ValueError(f"no photos for label {label!r}: put PNG, JPEG or WebP files in {folder / label}")
        for path in files:
            try:
                inputs.append(image.decode_request(Payload(path.read_bytes()), contract, Limits()).rows)
            except RequestError as e:
                raise ValueError(f"{path}: {e.detail}") from e
            labels.append(index)
    return np.concatenate(inputs), np.array(labels)
