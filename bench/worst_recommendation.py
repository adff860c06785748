"""Worst-case bodies for the recommender (the recommendation kind): the costliest asks its
limits still accept, and the ids it refuses (issue #27's list: a history of 100,000 ids,
k = 10^9, ids as floats, strings or negatives). Item ids cycle over MovieLens 100k's 1..1682
(ids, not data: nothing of the dataset is read here)."""

from __future__ import annotations

import json

from handlers.codec import Limits

MODEL = "movielens"  # the recommender they are sent to
ITEMS = 1682
JSON = "application/json"
# Each refusal's error code, checked through TorchServe (tests/test_recommendation_served.py).
REFUSED = {"rec_history_100k_ids": "too_many_values", "rec_history_over_limit": "history_too_long",
           "rec_k_1e9": "k_out_of_range",
           "rec_ids_as_floats": "wrong_type", "rec_ids_as_strings": "wrong_type",
           "rec_negative_ids": "unknown_item", "rec_unknown_user": "unknown_user"}  # fmt: skip


def history(n: int, start: int = 0) -> list[int]:
    """`n` item ids, each id once as long as the catalogue lasts: 1..1682, then again."""
    return [(start + i) % ITEMS + 1 for i in range(n)]


def body(doc: object) -> bytes:
    return json.dumps(doc).encode()


def asks_at_limit(limits: Limits | None = None) -> bytes:
    """As many longest histories as one body's JSON values allow (each ask a different slice)."""
    limits = limits or Limits()
    per_ask = limits.max_history_ids
    asks = (limits.max_json_values - 16) // (per_ask + 2)
    return body([{"history": history(per_ask, 97 * a), "k": 100} for a in range(asks)])


def cases() -> list[tuple[str, str, str, bytes, str, int]]:
    """(name, model, Content-Type, body, what it stresses, expected status) for bench.worst_cases."""
    limit = Limits().max_history_ids
    return [
        ("rec_history_at_limit", MODEL, JSON, body({"history": history(limit), "k": 100}), f"{limit} ids, k 100", 200),
        ("rec_asks_at_limit", MODEL, JSON, asks_at_limit(), f"asks of {limit} ids up to max_json_values", 200),
        ("rec_history_100k_ids", MODEL, JSON, body({"history": history(100_000)}), "a history of 100,000 ids", 413),
        ("rec_history_over_limit", MODEL, JSON, body({"history": history(limit + 1)}), f"{limit + 1} ids", 413),
        ("rec_k_1e9", MODEL, JSON, body({"history": [50, 172], "k": 10**9}), "k = 10^9", 400),
        ("rec_ids_as_floats", MODEL, JSON, b'{"history": [50.0, 172.5]}', "ids as floats", 400),
        ("rec_ids_as_strings", MODEL, JSON, body({"history": ["50", "172"]}), "ids as strings", 400),
        ("rec_negative_ids", MODEL, JSON, body({"history": [50, -1, -172]}), "negative ids", 400),
        ("rec_unknown_user", MODEL, JSON, body({"user": 10**6}), "a user the model never saw", 400),
    ]
