"""The benchmark's "floor": the least a TorchServe handler can do for digits, and nothing more.

Decode the PNG, scale to [0, 1], one forward pass of the same exported TorchScript file,
argmax. No validation, no limits, no per-request errors, no metrics, no model card: what the
served digits handler costs beyond this is the price of its guarantees. Archived by
`bench.baselines.floor_archive` with the shipped serving settings; never shipped.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import torch
from PIL import Image

SIDE = 28


class FloorHandler:
    def initialize(self, context) -> None:
        torch.set_num_threads(1)  # as the shipped handler: one intra-op thread per worker
        model_dir = context.system_properties["model_dir"]
        self.model = torch.jit.load(os.path.join(model_dir, context.manifest["model"]["serializedFile"])).eval()
        self.initialized = True

    def handle(self, data, context) -> list[str]:
        pixels = []
        for row in data:
            image = Image.open(io.BytesIO(row.get("body") or row.get("data"))).convert("L")
            if image.size != (SIDE, SIDE):
                image = image.resize((SIDE, SIDE))
            pixels.append(np.asarray(image, dtype=np.float32) / 255.0)
        with torch.inference_mode():
            labels = self.model(torch.from_numpy(np.stack(pixels)[:, None])).argmax(1).tolist()
        return [json.dumps({"label": str(label)}) for label in labels]
