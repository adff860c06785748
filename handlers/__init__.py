"""TorchServe's handler entry point (`handler.py`, over `base.py`: the batch adapter, with
`scheduling.py` for budgets and failure isolation, `runtime.py` for TorchScript or ONNX Runtime)
and what it adapts: one codec per input kind in `codecs/`, over what they share (`codec.py`:
errors, limits, payloads; `oip.py`: the Open Inference Protocol; `classification.py`; the
image decoder, the digit framing, the tokenizer). `contracts.py` holds what a model declares
about its input and output. Only `base.py` imports `ts` (its metrics API, when it records).
"""
