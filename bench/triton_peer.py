"""The benchmark's Triton peer: Triton Inference Server through PyTriton's Python backend,
serving an archive's own exported file with the archive's own codec (bench.codec_model), so
the server is the only difference from ours. Loopback only; never shipped.

A request is one BYTES element, the UTF-8 JSON of `bench.codec_model.peer_body`, in the Open
Inference Protocol (bench.triton.request_body); the answer is one BYTES element, the JSON our
codec encodes. Triton's dynamic batcher groups requests; one forward pass serves a batch. Its
instances are threads of this one process (PyTriton's design), each with its own model.

Runs in the Triton venv (bench.triton.ensure_venv), from the repository root:

    .venv-triton/bin/python -m bench.triton_peer --model-dir <unpacked archive> --http-port 8700 \\
        --grpc-port 8701 --metrics-port 8702 --instances 2 --threads 1 --batch 8 --delay-us 1000

Started and stopped by `bench.triton.triton_server`; SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

from bench.codec_model import CodecModel

HOST = "127.0.0.1"
ATTEMPTS = 3


def infer_function(model: CodecModel):
    """One instance's batched infer function: decode each row, one predict, encode each row."""

    @batch
    def infer(request: np.ndarray) -> dict[str, np.ndarray]:
        decoded = [model.decode(json.loads(row[0])) for row in request]
        outputs = model.predict(decoded)
        answers = [json.dumps(model.encode(o, d)).encode() for o, d in zip(outputs, decoded, strict=True)]
        return {"answer": np.array(answers, dtype=object).reshape(-1, 1)}

    return infer


def interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # Triton.serve() stops the server and cleans its workspace on it


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", required=True, help="an unpacked .mar")
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--metrics-port", type=int, required=True)
    p.add_argument("--instances", type=int, default=2, help="model instances (threads of this process)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per instance")
    p.add_argument("--batch", type=int, default=8, help="max_batch_size")
    p.add_argument("--delay-us", type=int, default=1000, help="the dynamic batcher's max_queue_delay_microseconds")
    a = p.parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    # Model unload (the backend stubs) takes ~5 s on the 2-core machine; a shorter exit timeout
    # makes tritonserver quit with the model live and leaves its /tmp/folder* copy behind.
    config = TritonConfig(http_address=HOST, http_port=a.http_port, grpc_address=HOST, grpc_port=a.grpc_port,
                          metrics_address=HOST, metrics_port=a.metrics_port, allow_gpu_metrics=False,
                          exit_timeout_secs=15)  # fmt: skip
    try:
        infer = [infer_function(CodecModel(a.model_dir, a.threads)) for _ in range(a.instances)]
        for attempt in range(1, ATTEMPTS + 1):
            with Triton(config=config) as triton:
                try:
                    triton.bind(model_name="peer", infer_func=infer, strict=False,
                                inputs=[Tensor(name="request", dtype=bytes, shape=(1,))],
                                outputs=[Tensor(name="answer", dtype=bytes, shape=(1,))],
                                config=ModelConfig(max_batch_size=a.batch,
                                                   batcher=DynamicBatcher(max_queue_delay_microseconds=a.delay_us)))  # fmt: skip
                except Exception as e:
                    # PyTriton 0.7.0 races with more than one instance: the second stub connects to
                    # the first one's handshake socket between its bind and listen ("load failed ...
                    # Connection refused"). Leaving the `with` stops the server; start it again.
                    print(
                        f"triton_peer: start {attempt}/{ATTEMPTS} failed: {(str(e) or type(e).__name__).splitlines()[0]}",
                        flush=True,
                    )
                    continue
                print(f"triton_peer: serving on http://{HOST}:{a.http_port} (start {attempt})", flush=True)
                triton.serve()
                return
    except KeyboardInterrupt:
        return
    sys.exit(f"triton_peer: the model did not load in {ATTEMPTS} starts")


if __name__ == "__main__":
    main()
