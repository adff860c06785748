"""Text kind: texts in, tokenized in the worker, one embedding per text out.

Accepted: a text/plain body (one text), JSON {"text": "..."} or {"texts": ["...", ...]}, or an
Open Inference Protocol BYTES tensor of shape [k]. Each text becomes a row of shape (2, L):
its token ids and attention mask, packed so every runtime takes one int64 input. A request is
padded to its own longest text; `collate` pads a batch to its longest, never to max_tokens.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from handlers import oip
from handlers.codec import Decoded, Limits, Payload, RequestError, check_media_type, check_size
from handlers.contracts import TextContract
from handlers.tokens import pack, token_kinds, tokenizer

ACCEPTED_MEDIA = ("text/plain", "application/json")
# A transformer's work grows with every row padded to the longest in its pass.
COST_UNIT = "padded tokens"
USAGE = (
    'Send a text/plain body, {"text": "..."}, {"texts": ["...", ...]}, or an Open Inference Protocol BYTES tensor [k].'
)


def collate(rows: list[np.ndarray]) -> np.ndarray:
    """The requests of one batch as one input, padded to the batch's longest text."""
    longest = max(r.shape[-1] for r in rows)
    return np.concatenate([np.pad(r, ((0, 0), (0, 0), (0, longest - r.shape[-1]))) for r in rows])


def _bare_text(payload: Payload) -> bool:
    """A body sent with no Content-Type is a text unless it opens like a JSON object."""
    value = payload.value
    return not payload.media_type and isinstance(value, (bytes, bytearray)) and not value[:64].lstrip().startswith(b"{")


def _texts(doc: Any) -> tuple[list[Any], str, str | None]:
    """(texts, form, request id) from a parsed JSON body."""
    if isinstance(doc, dict) and "text" in doc:
        return [doc["text"]], "single", None
    if isinstance(doc, dict) and "texts" in doc:
        texts = doc["texts"]
        if not isinstance(texts, list) or not texts:
            raise RequestError(400, "wrong_type", '"texts" must be a non-empty list of strings.')
        return texts, "rows", None
    if oip.is_v2_request(doc):
        inputs = doc.get("inputs")
        if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
            raise RequestError(400, "wrong_v2_request", '"inputs" must be a list holding exactly one tensor object.')
        tensor = inputs[0]
        if tensor.get("datatype") != "BYTES":
            raise RequestError(400, "wrong_datatype", f"datatype {str(tensor.get('datatype'))[:20]!r}: send BYTES.")
        data = tensor.get("data")
        if not isinstance(data, list) or not data:
            raise RequestError(400, "wrong_shape", "data must be a non-empty list of strings, shape [k].")
        if tensor.get("shape") not in ([len(data)], [len(data), 1]):
            raise RequestError(400, "wrong_shape", f"shape {tensor.get('shape')} does not fit {len(data)} texts: [k].")
        return data, "v2", oip.request_id(doc)
    raise RequestError(400, "unsupported_input", USAGE)


def decode_request(payload: Payload, contract: TextContract, limits: Limits) -> Decoded:
    """One request -> Decoded rows (k, 2, L) of token ids and masks, L its longest text."""
    check_media_type(payload, ACCEPTED_MEDIA)
    value = payload.value
    binary: bool | frozenset[str] = False
    if payload.binary_header is None and (
        payload.media_type == "text/plain" or isinstance(value, str) or _bare_text(payload)
    ):
        raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(value)
        check_size(raw, limits)
        texts, form, request_id = [raw], "single", None
    else:
        doc = oip.split_binary(value, payload.binary_header, limits)
        texts, form, request_id = _texts(doc)
        binary = oip.binary_outputs(doc) if form == "v2" else False
    if len(texts) > limits.max_rows:
        raise RequestError(413, "too_many_rows", f"{len(texts)} texts in one request; the limit is {limits.max_rows}.")
    checked = [_text(t, f"texts[{i}]" if form != "single" else "text", limits) for i, t in enumerate(texts)]
    encodings = tokenizer(contract.tokenizer, contract.max_tokens).encode_batch(checked)
    truncated = tuple(bool(e.overflowing) for e in encodings)
    rows = pack(encodings)
    return Decoded(rows, form, request_id, truncated=truncated, length=rows.shape[-1], binary_outputs=binary)


def _text(value: Any, where: str, limits: Limits) -> str:
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as e:
            raise RequestError(
                400, "invalid_utf8", f"{where} is not valid UTF-8 ({e.reason} at byte {e.start})."
            ) from e
    if not isinstance(value, str):
        raise RequestError(400, "wrong_type", f"{where} is {type(value).__name__}; expected a string.")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > limits.max_text_bytes:
        raise RequestError(
            413, "text_too_long", f"{where} is {size} bytes; the limit is {limits.max_text_bytes} (max_text_bytes)."
        )
    if not value.strip():
        raise RequestError(400, "empty_text", f"{where} is empty; send some text.")
    return value


def encode_outputs(outputs: np.ndarray, decoded: Decoded, contract: TextContract, model_name: str) -> Any:
    """One request's (k, dims) embeddings, in the form the request came in."""
    if decoded.form == "v2":
        return oip.response(model_name, [oip.tensor("embedding", outputs.astype(np.float32))], decoded.request_id)
    answers = [
        {"embedding": row.astype(np.float32).tolist(), "truncated": cut}
        for row, cut in zip(outputs, decoded.truncated, strict=True)
    ]
    return answers[0] if decoded.form == "single" else answers


def input_signals(rows: np.ndarray, contract: TextContract) -> dict[str, np.ndarray]:
    """Per text, from its token ids and mask: the token count, the share of unknown tokens, and
    word pieces per word (a text in a language the vocabulary was not made for splits into
    many pieces long before its tokens are unknown)."""
    ids, mask = rows[:, 0], rows[:, 1].astype(bool)
    kinds = token_kinds(contract.tokenizer, contract.max_tokens)
    real = mask & ~kinds.special[ids]
    tokens = real.sum(1)
    words = (real & ~kinds.continuation[ids]).sum(1)
    return {
        "tokens": mask.sum(1).astype(np.float64),
        "unknown_share": (real & kinds.unknown[ids]).sum(1) / np.maximum(tokens, 1),
        "pieces_per_word": tokens / np.maximum(words, 1),
    }


def replay_inputs(rows: np.ndarray, contract: TextContract) -> list[dict[str, Any]]:
    """The protocol's input for `rows` (k, 2, L): each row's tokens decoded back to a text.
    Decoding drops what the tokenizer normalised away (case, accents), so the text may tokenize
    differently from the row; the replay records what the model answers to the text itself."""
    tok = tokenizer(contract.tokenizer, contract.max_tokens)
    texts = [tok.decode(ids[mask == 1].tolist(), skip_special_tokens=True) for ids, mask in rows]
    return [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]


def oip_metadata(contract: TextContract) -> dict[str, list[dict[str, Any]]]:
    """The tensors `decode_request` and `encode_outputs` take and give in the protocol's form."""
    return {
        "inputs": [oip.tensor_metadata("text", "BYTES", [-1])],
        "outputs": [oip.tensor_metadata("embedding", "FP32", [-1, contract.dims])],
    }


def schema(contract: TextContract) -> dict[str, Any]:
    """The input and output contract that the management API's describe call shows."""
    return {
        "input": {
            "text/plain": "one text (UTF-8)",
            "application/json": ['{"text": "..."}', '{"texts": ["...", ...]}'],
            "open_inference_protocol": "one BYTES tensor, shape [k]",
            "tokens": f"at most {contract.max_tokens} per text; longer texts are truncated and answered with truncated: true",
        },
        "output": {
            "json": f'{{"embedding": [{contract.dims} floats, L2-normalised], "truncated": bool}} (a list for "texts")',
            "open_inference_protocol": [f"embedding [k, {contract.dims}] FP32"],
        },
    }
