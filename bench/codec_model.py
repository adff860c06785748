"""An archive's model and codec outside any server: what the peers (LitServe, Triton) serve, so
the server is the only difference from ours. Imports neither TorchServe nor a peer's package."""

from __future__ import annotations

import base64
import json
import os

import numpy as np
import torch
import yaml

from handlers import contracts, runtime
from handlers.codec import Decoded, Limits, Payload
from handlers.codecs import codec_for


class CodecModel:
    """An unpacked .mar's runtime (`threads` intra-op threads) and codec."""

    def __init__(self, model_dir: str, threads: int) -> None:
        with open(os.path.join(model_dir, "model-config.yaml")) as f:
            config = yaml.safe_load(f)["handler"]
        with open(os.path.join(model_dir, "MAR-INF", "MANIFEST.json")) as f:
            serialized = json.load(f)["model"]["serializedFile"]
        self.limits = Limits.from_mapping(config.get("limits", {}))
        self.contract = contracts.from_yaml(config, model_dir)
        self.codec = codec_for(self.contract.kind)
        self.runtime = runtime.load(os.path.join(model_dir, serialized), torch.device("cpu"), threads)

    def decode(self, request: dict) -> Decoded:
        """A peer's request, `{"body": base64, "content_type": ...}` (peers take JSON), decoded
        exactly as our handler decodes the same body."""
        payload = Payload(base64.b64decode(request["body"]), request["content_type"])
        return self.codec.decode_request(payload, self.contract, self.limits)

    def predict(self, items: list[Decoded]) -> list[np.ndarray]:
        """One forward pass over `items`' rows, split back into each item's own outputs."""
        outputs = self.runtime(getattr(self.codec, "collate", np.concatenate)([d.rows for d in items]))
        parts = np.split(outputs, np.cumsum([len(d.rows) for d in items])[:-1])
        own = getattr(self.codec, "own_outputs", None)
        return [own(p, d) if own else p for p, d in zip(parts, items, strict=True)]

    def encode(self, outputs: np.ndarray, decoded: Decoded):
        return self.codec.encode_outputs(outputs, decoded, self.contract, "peer")


def peer_body(example: bytes, content_type: str) -> str:
    """The JSON a peer is sent for one example body."""
    return json.dumps({"body": base64.b64encode(example).decode(), "content_type": content_type})
