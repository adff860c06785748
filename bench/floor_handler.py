"""The benchmark's "floor": the least a TorchServe handler can do for digits, and nothing more.

Decode the PNG, scale to [0, 1], one forward pass of the same exported file (TorchScript or
ONNX, whichever digits ships), argmax. No validation, no limits, no per-request errors, no metrics, no model card: what the
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
        threads = int(context.model_yaml_config["handler"]["threads"])  # as the shipped handler's
        path = os.path.join(context.system_properties["model_dir"], context.manifest["model"]["serializedFile"])
        if path.endswith(".onnx"):
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            self.forward = lambda x: session.run(None, {session.get_inputs()[0].name: x})[0]
        else:
            torch.set_num_threads(threads)
            model = torch.jit.load(path).eval()
            self.forward = lambda x: model(torch.from_numpy(x)).numpy()
        self.initialized = True

    def handle(self, data, context) -> list[str]:
        pixels = []
        for row in data:
            image = Image.open(io.BytesIO(row.get("body") or row.get("data"))).convert("L")
            if image.size != (SIDE, SIDE):
                image = image.resize((SIDE, SIDE))
            pixels.append(np.asarray(image, dtype=np.float32) / 255.0)
        with torch.inference_mode():
            labels = self.forward(np.stack(pixels)[:, None]).argmax(1).tolist()
        return [json.dumps({"label": str(label)}) for label in labels]
