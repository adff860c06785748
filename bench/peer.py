"""The benchmark's peer: LitServe serving an archive's own exported file with the archive's own
codec (decoding, tokenizer, batching rules, answers), so the server is the only difference.

LitServe takes JSON (or forms), so a request is its idiom for bytes: the example's body base64
in `{"body": ..., "content_type": ...}`. Loopback only; never shipped.

    python -m bench.peer --model-dir <unpacked archive> --port 8600 --workers 2 --batch 8

Started and stopped by `bench.baselines.peer_server`; the settings it runs at are found by the
same sweep as ours (bench.tuning).
"""

from __future__ import annotations

import argparse

import litserve as ls

from bench.codec_model import CodecModel


class CodecAPI(ls.LitAPI):
    def __init__(self, model_dir: str, threads: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model_dir, self.threads = model_dir, threads

    def setup(self, device: str) -> None:
        self.model = CodecModel(self.model_dir, self.threads)

    def decode_request(self, request: dict):
        return self.model.decode(request)

    def batch(self, inputs: list) -> list:
        return inputs

    def predict(self, batch):
        items = batch if isinstance(batch, list) else [batch]  # max_batch_size 1: no list
        answers = list(zip(self.model.predict(items), items, strict=True))
        return answers if isinstance(batch, list) else answers[0]

    def unbatch(self, output: list) -> list:
        return output

    def encode_response(self, answer):
        return self.model.encode(*answer)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", required=True, help="an unpacked .mar")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workers", type=int, default=2, help="LitServe workers on the CPU")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per worker")
    p.add_argument("--batch", type=int, default=8, help="max_batch_size")
    p.add_argument("--timeout-ms", type=float, default=1.0, help="batch_timeout in milliseconds")
    a = p.parse_args(argv)
    api = CodecAPI(a.model_dir, a.threads, max_batch_size=a.batch, batch_timeout=a.timeout_ms / 1000)
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=a.workers, timeout=30)
    server.run(host="127.0.0.1", port=a.port, num_api_servers=1, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
