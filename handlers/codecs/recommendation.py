"""Recommendation kind: a known user or a history of item ids in, the catalogue's top k items out.

Accepted (JSON): {"user": id} or {"history": [item ids, oldest first]}, each with optional "k"
(1..max_k, default the contract's) and "exclude_seen" (default true), or a list of such objects;
or an Open Inference Protocol tensor "history" [n, L] of item ids padded with -1 (any integer
datatype), with parameters "k" and "exclude_seen". A known user's history is the one in the
archive's catalogue. Each request becomes rows (3, L) (contracts.RecommendationContract) padded
with -1; `collate` pads a pass to its longest history. Answers: [{"item", "title", "score"}],
best first; excluded items are never listed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from handlers import oip
from handlers.codec import Decoded, Limits, Payload, RequestError, check_media_type
from handlers.contracts import RecommendationContract

ACCEPTED_MEDIA = ("application/json",)
# A pass embeds every history id (the catalogue's matrix product is the same for any row).
COST_UNIT = "history ids"
PAD = -1
FIELDS = ("user", "history", "k", "exclude_seen")
USAGE = (
    'Send {"user": id} or {"history": [item ids]}, optionally with "k" and "exclude_seen", a list of such '
    'objects, or an Open Inference Protocol tensor "history" [n, L] of item ids padded with -1.'
)
INTEGER_DATATYPES = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")


@dataclass(frozen=True)
class Catalogue:
    ids: np.ndarray  # the item id at each model index
    titles: tuple[str, ...]
    popularity: np.ndarray  # training interactions per model index
    index: dict[int, int]  # item id -> model index
    users: dict[int, list[int]]  # known user id -> model indices of their history, oldest first


@lru_cache(maxsize=4)
def catalogue(path: str) -> Catalogue:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    ids = np.asarray([item[0] for item in data["items"]], np.int64)
    index = {int(i): n for n, i in enumerate(ids)}
    users = {int(u): [index[i] for i in history] for u, history in data["users"].items()}
    popularity = np.asarray([item[2] for item in data["items"]], np.float64)
    return Catalogue(ids, tuple(item[1] for item in data["items"]), popularity, index, users)


def pack(history: list[int], width: int, window: int, excluded: bool = True) -> np.ndarray:
    """One history (model indices, oldest first) as the model's row (3, width): indices then -1,
    1 where an item is in the user's vector (the latest `window`), 1 where the answer excludes it."""
    row = np.zeros((3, width), np.int64)
    row[0] = PAD
    row[0, : len(history)] = history
    row[1, max(0, len(history) - window) : len(history)] = 1
    row[2, : len(history)] = int(excluded)
    return row


def collate(rows: list[np.ndarray]) -> np.ndarray:
    """One pass's requests as one input, padded to its longest history."""
    longest = max(r.shape[-1] for r in rows)
    out = np.zeros((sum(len(r) for r in rows), 3, longest), np.int64)
    out[:, 0] = PAD
    start = 0
    for r in rows:
        out[start : start + len(r), :, : r.shape[-1]] = r
        start += len(r)
    return out


def _integer(value: Any, where: str) -> int:
    if type(value) is not int:  # a bool is an int in Python; 3.0 and "3" are not ids
        raise RequestError(400, "wrong_type", f"{where} is {json.dumps(value)[:40]}; expected an integer.")
    return value


def _k(value: Any, contract: RecommendationContract, where: str) -> int:
    if value is None:
        return contract.default_k
    k = _integer(value, where)
    if not 1 <= k <= contract.max_k:
        raise RequestError(400, "k_out_of_range", f"{where} is {k}; ask for 1 to {contract.max_k} items.")
    return k


def _exclude(value: Any, where: str) -> bool:
    if value is None:
        return True
    if not isinstance(value, bool):
        raise RequestError(400, "wrong_type", f"{where} is {json.dumps(value)[:40]}; expected true or false.")
    return value


def _indices(ids: list[int], cat: Catalogue, where: str, limits: Limits) -> list[int]:
    """Model indices of a history's item ids, each once (its latest place), oldest first."""
    if not ids:
        raise RequestError(400, "empty_history", f"{where} is empty; send at least one item id, or a known user.")
    if len(ids) > limits.max_history_ids:
        raise RequestError(
            413, "history_too_long",
            f"{where} holds {len(ids)} ids; the limit is {limits.max_history_ids} (max_history_ids). Send the latest ones.",
        )  # fmt: skip
    unknown = [i for i in ids if i not in cat.index]
    if unknown:
        shown = ", ".join(map(str, unknown[:5])) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise RequestError(
            400, "unknown_item", f"{where} holds ids not in the catalogue of {len(cat.ids)} items: {shown}."
        )
    latest = list(dict.fromkeys(reversed(ids)))[::-1]
    return [cat.index[i] for i in latest]


def _ask(doc: Any, where: str, cat: Catalogue, contract: RecommendationContract, limits: Limits) -> tuple:
    """One JSON ask -> (history as model indices, k, exclude_seen)."""
    if not isinstance(doc, dict) or ("user" in doc) == ("history" in doc):
        raise RequestError(400, "unsupported_input", f"{where}: {USAGE}")
    extra = [str(key)[:40] for key in doc if key not in FIELDS]
    if extra:
        raise RequestError(400, "unknown_field", f"{where} has {extra[:5]}; the fields are {', '.join(FIELDS)}.")
    k, exclude = _k(doc.get("k"), contract, f"{where}.k"), _exclude(doc.get("exclude_seen"), f"{where}.exclude_seen")
    if "user" in doc:
        user = _integer(doc["user"], f"{where}.user")
        if user not in cat.users:
            raise RequestError(
                400, "unknown_user",
                f"user {user} is not one of the {len(cat.users)} users this model knows; send their history instead.",
            )  # fmt: skip
        return cat.users[user], k, exclude
    history = doc["history"]
    if not isinstance(history, list):
        raise RequestError(400, "wrong_type", f"{where}.history must be a list of item ids.")
    ids = [_integer(v, f"{where}.history[{i}]") for i, v in enumerate(history)]
    return _indices(ids, cat, f"{where}.history", limits), k, exclude


def _ids(data: Any, n: int, length: int) -> np.ndarray:
    """A protocol tensor's ids as exact integers (n, length): a binary integer array as it came,
    JSON as whole numbers only (never through float32, which would round ids past 2**24)."""
    if isinstance(data, np.ndarray):  # a binary tensor: its datatype is an integer one, checked above
        if data.size != n * length:
            raise RequestError(
                400, "wrong_shape", f"data holds {data.size} ids; shape [{n}, {length}] needs {n * length}."
            )
        return data.reshape(n, length).astype(np.int64)
    if not isinstance(data, list):
        raise RequestError(400, "wrong_type", "data must be a list of item ids.")
    flat = data
    if any(type(row) is list for row in data):  # nested: n rows of `length` ids each
        if len(data) != n or not all(type(row) is list and len(row) == length for row in data):
            raise RequestError(
                400, "wrong_shape", f"data is not nested as [{n}, {length}]; nest it so, or send it flat."
            )
        flat = [v for row in data for v in row]
    if len(flat) != n * length:
        raise RequestError(400, "wrong_shape", f"data holds {len(flat)} ids; shape [{n}, {length}] needs {n * length}.")
    return np.asarray([_integer(v, f"data[{i}]") for i, v in enumerate(flat)], np.int64).reshape(n, length)


def _v2(doc: dict[str, Any], cat: Catalogue, contract: RecommendationContract, limits: Limits) -> list[tuple]:
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise RequestError(400, "wrong_v2_request", '"inputs" must be a list holding exactly one tensor object.')
    tensor = inputs[0]
    if tensor.get("datatype") not in INTEGER_DATATYPES:
        raise RequestError(400, "wrong_datatype", f"datatype {str(tensor.get('datatype'))[:20]!r}: send INT64 ids.")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or len(shape) not in (1, 2) or not all(type(d) is int and d > 0 for d in shape):
        raise RequestError(400, "wrong_shape", "shape must be [n, L] (or [L]): n histories of L ids padded with -1.")
    n, length = (1, shape[0]) if len(shape) == 1 else shape
    if n > limits.max_rows:
        raise RequestError(413, "too_many_rows", f"{n} histories in one request; the limit is {limits.max_rows}.")
    if length > limits.max_history_ids:
        raise RequestError(
            413, "history_too_long", f"L is {length}; the limit is {limits.max_history_ids} ids (max_history_ids)."
        )
    values = _ids(tensor.get("data"), n, length)
    params = doc.get("parameters") if isinstance(doc.get("parameters"), dict) else {}
    k, exclude = _k(params.get("k"), contract, "parameters.k"), _exclude(params.get("exclude_seen"), "parameters")
    rows = [[int(v) for v in row if v != PAD] for row in values]
    return [(_indices(ids, cat, f"history[{i}]", limits), k, exclude) for i, ids in enumerate(rows)]


def decode_request(payload: Payload, contract: RecommendationContract, limits: Limits) -> Decoded:
    """One request -> Decoded rows (n, 3, L), L its longest history; each row's k in options."""
    check_media_type(payload, ACCEPTED_MEDIA)
    doc = oip.split_binary(payload.value, payload.binary_header, limits)
    cat = catalogue(contract.catalogue)
    request_id, binary = None, False
    if oip.is_v2_request(doc):
        asks, form = _v2(doc, cat, contract, limits), "v2"
        request_id, binary = oip.request_id(doc), oip.binary_outputs(doc)
    elif isinstance(doc, list):
        if not doc or len(doc) > limits.max_rows:
            status, code = (400, "wrong_shape") if not doc else (413, "too_many_rows")
            raise RequestError(status, code, f"{len(doc)} asks in the list; send 1 to {limits.max_rows}.")
        asks, form = [_ask(d, f"[{i}]", cat, contract, limits) for i, d in enumerate(doc)], "rows"
    else:
        asks, form = [_ask(doc, "body", cat, contract, limits)], "single"
    width = max(len(history) for history, _, _ in asks)
    rows = np.stack([pack(history, width, contract.window, exclude) for history, _, exclude in asks])
    ks = tuple(k for _, k, _ in asks)
    return Decoded(rows, form, request_id, length=width, binary_outputs=binary, options=(("k", ks),))


def _top(row: np.ndarray, k: int, contract: RecommendationContract) -> tuple[np.ndarray, np.ndarray]:
    """A row's (item indices, scores): its first k that the request did not exclude."""
    kept = row[0] > contract.MASKED_SCORE / 2
    return row[1][kept][:k].round().astype(np.int64), row[0][kept][:k]


def encode_outputs(outputs: np.ndarray, decoded: Decoded, contract: RecommendationContract, model_name: str) -> Any:
    """One request's (n, 2, max_k) top scores and indices as its answer, in the form it came in."""
    cat = catalogue(contract.catalogue)
    tops = [_top(row, k, contract) for row, k in zip(outputs, dict(decoded.options)["k"], strict=True)]
    if decoded.form == "v2":  # one k for the request; a row with fewer items left is padded with -1 / 0
        k = dict(decoded.options)["k"][0]
        items, scores = np.full((len(tops), k), PAD, np.int64), np.zeros((len(tops), k), np.float32)
        for i, (index, score) in enumerate(tops):
            items[i, : len(index)], scores[i, : len(index)] = cat.ids[index], score
        tensors = [oip.tensor("items", items, "INT64"), oip.tensor("scores", scores)]
        return oip.response(model_name, tensors, decoded.request_id)
    answers = [
        [
            {"item": int(cat.ids[i]), "title": cat.titles[i], "score": float(s)}
            for i, s in zip(index, score, strict=True)
        ]
        for index, score in tops
    ]
    return answers[0] if decoded.form == "single" else answers


def input_signals(rows: np.ndarray, contract: RecommendationContract) -> dict[str, np.ndarray]:
    """Per history: its length, and how popular its items were in training (mean log of their
    interactions): traffic drifting to niche or new items shows in the second first."""
    popularity = np.log1p(catalogue(contract.catalogue).popularity)
    ids = rows[:, 0]
    real = ids != PAD
    length = real.sum(1)
    mean_popularity = np.where(real, popularity[np.where(real, ids, 0)], 0.0).sum(1) / np.maximum(length, 1)
    return {"history_length": length.astype(np.float64), "history_popularity": mean_popularity}


def replay_inputs(rows: np.ndarray, contract: RecommendationContract) -> list[dict[str, Any]]:
    """The protocol's input for `rows` (n, 3, L): each history's item ids, padded with -1."""
    ids = catalogue(contract.catalogue).ids
    history = np.where(rows[:, 0] == PAD, PAD, ids[np.maximum(rows[:, 0], 0)])
    return [{"name": "history", "shape": list(history.shape), "datatype": "INT64", "data": history.ravel().tolist()}]


def oip_metadata(contract: RecommendationContract) -> dict[str, list[dict[str, Any]]]:
    return {
        "inputs": [oip.tensor_metadata("history", "INT64", [-1, -1])],
        "outputs": [oip.tensor_metadata("items", "INT64", [-1, -1]), oip.tensor_metadata("scores", "FP32", [-1, -1])],
    }


def schema(contract: RecommendationContract) -> dict[str, Any]:
    return {
        "input": {
            "application/json": ['{"user": id, "k": 10}', '{"history": [item ids, oldest first], "k": 10}'],
            "options": f'"k": 1..{contract.max_k} (default {contract.default_k}); "exclude_seen": true (default)',
            "open_inference_protocol": 'INT64 "history" [n, L], padded with -1; parameters k, exclude_seen',
            "history": f"the latest {contract.window} items make the user's vector; every item is excluded",
        },
        "output": {
            "json": '[{"item": id, "title": "...", "score": float}, ...] best first (a list of those for a list)',
            "open_inference_protocol": ["items [n, k] INT64 (-1: none left)", "scores [n, k] FP32"],
        },
    }
