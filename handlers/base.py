"""BatchHandler: adapts TorchServe's batch of requests to a codec and one forward pass.

Each request is decoded on its own; a bad one gets its own 4xx and JSON body while the
valid ones share one batched forward pass and get their answers in their own positions.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np
import torch

from handlers.codec import Limits, RequestError

logger = logging.getLogger(__name__)

JSON = "application/json"
MODEL_CARD = "model_card.json"


def select_device(gpu_id: int | None, cuda_available: bool) -> torch.device:
    """The worker's assigned GPU when CUDA is there, else the CPU."""
    if cuda_available and gpu_id is not None:
        return torch.device(f"cuda:{int(gpu_id)}")
    return torch.device("cpu")


class BatchHandler:
    """Subclasses set `decode(request)` and `encode(output_row)`; this does the rest."""

    def initialize(self, context: Any) -> None:
        props = context.system_properties
        self.model_dir = props["model_dir"]
        settings = (context.model_yaml_config or {}).get("handler", {}) or {}
        self.limits = Limits.from_mapping(settings)
        # PyTorch's default (one thread per core, per worker) oversubscribes small machines.
        torch.set_num_threads(int(settings.get("threads", 1)))
        self.device = select_device(props.get("gpu_id"), torch.cuda.is_available())
        serialized = context.manifest["model"]["serializedFile"]
        self.model = torch.jit.load(os.path.join(self.model_dir, serialized), map_location=self.device)
        self.model.eval()
        with open(os.path.join(self.model_dir, MODEL_CARD)) as f:
            self.card = json.load(f)
        self.load_extras()
        self.initialized = True

    def load_extras(self) -> None:
        """Hook for model-specific files in the archive (labels, ...)."""

    def decode(self, request: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError

    def encode(self, output_row: np.ndarray) -> Any:
        raise NotImplementedError

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[str]:
        responses: list[str] = [""] * len(data)
        rows, positions = [], []
        for idx, request in enumerate(data):
            try:
                rows.append(self.decode(request))
                positions.append(idx)
            except RequestError as e:
                responses[idx] = self._reply(context, idx, e.status, e.body())
        if rows:
            try:
                batch = torch.from_numpy(np.stack(rows)).to(self.device)
                with torch.inference_mode():
                    outputs = self.model(batch).cpu().numpy()
                answers = [self.encode(row) for row in outputs]
            except Exception as e:  # the worker must survive a failed forward pass
                logger.exception("inference failed for a batch of %d", len(rows))
                failure = {"error": "inference_failed", "detail": f"{type(e).__name__}: {e}"}
                for idx in positions:
                    responses[idx] = self._reply(context, idx, 500, failure)
                return responses
            for idx, answer in zip(positions, answers, strict=True):
                responses[idx] = self._reply(context, idx, 200, answer)
        return responses

    @staticmethod
    def _reply(context: Any, idx: int, status: int, body: Any) -> str:
        context.set_response_content_type(idx, JSON)
        if status != 200:
            context.set_response_status(status, body.get("error", ""), idx)
        return json.dumps(body)
