"""The benchmark's "peer": LitServe serving the same exported digits TorchScript file.

Same batching as the shipped archive (max_batch_size 8, a ~1 ms batch timeout), two CPU
workers with one intra-op thread each, loopback only. LitServe takes JSON (or forms), so
the PNG arrives base64 in `{"image": ...}`: LitServe's own idiom for images.

    python -m bench.peer --model artifacts/digits/torchscript/digits.pt --port 8600

Started and stopped by `bench.baselines.peer_server`; never shipped.
"""

from __future__ import annotations

import argparse
import base64
import io

import litserve as ls
import numpy as np
import torch
from PIL import Image


class DigitsAPI(ls.LitAPI):
    def __init__(self, model_path: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model_path = model_path

    def setup(self, device: str) -> None:
        torch.set_num_threads(1)
        self.model = torch.jit.load(self.model_path).eval()

    def decode_request(self, request: dict) -> np.ndarray:
        image = Image.open(io.BytesIO(base64.b64decode(request["image"]))).convert("L")
        return np.asarray(image, dtype=np.float32) / 255.0

    def batch(self, inputs: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(inputs)[:, None])

    def predict(self, x: torch.Tensor) -> list[int]:
        with torch.inference_mode():
            return self.model(x).argmax(1).tolist()

    def unbatch(self, output: list[int]) -> list[int]:
        return output

    def encode_response(self, label: int) -> dict:
        return {"label": str(label)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="exported TorchScript file")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workers", type=int, default=2, help="LitServe workers on the CPU")
    p.add_argument("--batch", type=int, default=8, help="max_batch_size")
    p.add_argument("--timeout-ms", type=float, default=1.0, help="batch_timeout in milliseconds")
    a = p.parse_args(argv)
    api = DigitsAPI(a.model, max_batch_size=a.batch, batch_timeout=a.timeout_ms / 1000)
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=a.workers, timeout=30)
    server.run(host="127.0.0.1", port=a.port, num_api_servers=1, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
