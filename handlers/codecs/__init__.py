"""One codec module per input kind (`audio`, `image`, `tabular`, `text`), named as the contract's `kind`.

A codec is plain functions over plain data, never `ts`: tests call it directly, and the model
logic could move to another server unchanged. Each one defines
- `decode_request(payload, contract, limits) -> Decoded`: one request, checked and refused
  (RequestError) on its own, before batching;
- `encode_outputs(outputs, decoded, contract, model_name)`: one request's answer, in the form
  it came in (JSON, or the Open Inference Protocol);
- `schema(contract)` for the describe call and `oip_metadata(contract)` for the protocol's
  model metadata, both derived from the contract;
- `input_signals(rows, contract)`: per model row, the numbers monitoring buckets against the
  archive's reference profile (handlers.monitoring): a tabular feature, an image's mean
  intensity, a text's tokens;
- `replay_inputs(rows, contract)`: the Open Inference Protocol input that decodes back to
  model rows, which the archive's replay sample sends (training.replay, `tsforge verify`);
- `COST_UNIT`, what its budgets count, and optionally `collate(rows)` (default: concatenate)
  and `own_outputs(outputs, decoded)`, a request's outputs cut from a padded pass (audio), and
  `declared_cost(payload, contract, limits)`, a request's cost read from its header before
  decoding (audio: a call refuses and admits by it, so what it defers costs no decoding), or
  None. It must raise the RequestError decoding would for what the header already shows, and
  count at least what decoding and the pass will cost.
A new input kind is one module here plus one contract class in handlers/contracts.py.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

FOLDER = Path(__file__).parent


def codec_for(kind: str) -> ModuleType:
    """The codec module of a contract's kind (imported on demand: an archive ships only its own)."""
    return importlib.import_module(f"{__name__}.{kind}")


def codec_file(kind: str) -> Path:
    return FOLDER / f"{kind}.py"
