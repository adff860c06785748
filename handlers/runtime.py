"""The two runtimes behind one handler: TorchScript (`.pt`) and ONNX Runtime (`.onnx`).

Each takes a float32 batch as a NumPy array and returns the model's output as one, so the
handler's decoding, validation, errors, metrics and Open Inference Protocol code is the same
for both. The archive's serialized file decides which one a worker runs; the export gates
load the exported file through this module too, so they gate exactly what the worker runs.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np
import torch

logger = logging.getLogger(__name__)

ONNX_SUFFIX = ".onnx"


class Runtime(Protocol):
    name: str
    device: str

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchScriptRuntime:
    name = "torchscript"

    def __init__(self, path: str, device: torch.device, threads: int) -> None:
        if threads > 0:  # 0 leaves PyTorch's default (the benchmark's "defaults" baseline)
            torch.set_num_threads(threads)
        self._device = device
        self.device = str(device)
        self.model = torch.jit.load(path, map_location=device).eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(batch).to(self._device)).cpu().numpy()


class OnnxRuntime:
    name = "onnx"

    def __init__(self, path: str, device: torch.device, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One intra-op thread per worker for the same reason as TorchScript's (README, "Worker
        # threads"); 0 is ONNX Runtime's default, one thread per core.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # The archive holds the portable (extended) optimisations done offline; the layout
        # ones that depend on this machine's CPU are left to load time.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
            else:  # the onnxruntime wheel is CPU-only; onnxruntime-gpu brings the CUDA provider
                logger.warning("GPU %s assigned but onnxruntime has no CUDA provider: running on CPU", device)
        self.session = ort.InferenceSession(path, options, providers=providers)
        self.device = self.session.get_providers()[0]
        self.input = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        # float32 pixels and features, or int64 token ids: the dtype the codec made is the model's
        return self.session.run(None, {self.input: np.ascontiguousarray(batch)})[0]


def load(path: str, device: torch.device, threads: int) -> Runtime:
    """The runtime for an exported file, chosen by its suffix."""
    runtime = OnnxRuntime if str(path).endswith(ONNX_SUFFIX) else TorchScriptRuntime
    return runtime(str(path), device, threads)
