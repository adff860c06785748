"""The recommender without TorchServe: the split by time, the popularity baseline recomputed
another way, the codec's every form and refusal, the top-k parity rule, and the build's gates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from handlers.codec import Limits, Payload, RequestError
from handlers.codecs import recommendation as codec
from models import movielens
from training.gates import ranking_parity

SPEC = movielens.SPEC
CONTRACT = SPEC.contract


@pytest.fixture(scope="module")
def catalogue():
    movielens.write_catalogue()
    return codec.catalogue(CONTRACT.catalogue)


def decode(doc):
    return codec.decode_request(Payload(json.dumps(doc).encode(), "application/json"), CONTRACT, Limits())


def refusal(doc) -> tuple[int, str]:
    with pytest.raises(RequestError) as e:
        decode(doc)
    return e.value.status, e.value.code


def test_each_users_latest_two_interactions_are_held_out():
    """Read the ratings file directly: each user's test target is their latest rating (ties by
    movie id), validation the one before, and neither is in the training history."""
    rows = np.loadtxt(movielens.data_file(movielens.INTERACTIONS), skiprows=1, dtype=np.int64)
    movies, users = movielens.movielens()
    ids = np.asarray([m[0] for m in movies])
    train, val, test = movielens.time_split()
    assert len(rows) == 100_000 and len(users) == 943 and len(movies) == 1682
    for user in (1, 196, 405, 943):
        mine = rows[rows[:, 0] == user]
        mine = mine[np.lexsort((mine[:, 1], mine[:, 3]))]
        assert ids[test[user]] == mine[-1, 1] and ids[val[user]] == mine[-2, 1]
        assert list(ids[train[user]]) == list(mine[:-2, 1])
    assert sum(map(len, train.values())) == 100_000 - 2 * 943


def test_the_popularity_baseline_matches_a_plain_top_ten(catalogue):
    """The gate's baseline (the ranks in the held-out targets) against a top ten built by
    sorting: the most interacted-with unseen movies, from the catalogue's counts."""
    splits = movielens.splits(SPEC.seed)
    targets, ranks = splits.test.y[:, 0].numpy(), splits.test.y[:, 1].numpy()
    order = np.lexsort((np.arange(len(catalogue.ids)), -catalogue.popularity))
    hits = 0
    for row, target, rank in zip(splits.test.x.numpy(), targets, ranks, strict=True):
        seen = set(row[0][row[0] >= 0].tolist())
        top = [i for i in order if i not in seen][:10]
        hit = target in top
        assert hit == (rank < 10) and (not hit or top.index(target) == rank)
        hits += hit
    assert 0.02 < hits / len(targets) < 0.2  # MovieLens 100k's popularity HR@10 is a few percent


def test_each_form_decodes_to_the_same_row(catalogue):
    history = [50, 172, 181, 174, 210]
    single = decode({"history": history})
    assert single.form == "single" and dict(single.options)["k"] == (CONTRACT.default_k,)
    row = single.rows[0]
    assert [int(catalogue.ids[i]) for i in row[0]] == history and row[1].all() and row[2].all()
    listed = decode([{"history": history, "k": 3}, {"history": history[:2], "exclude_seen": False}])
    assert listed.form == "rows" and dict(listed.options)["k"] == (3, CONTRACT.default_k)
    np.testing.assert_array_equal(listed.rows[0], row)
    assert list(listed.rows[1, 0]) == [*row[0][:2], -1, -1, -1] and not listed.rows[1, 2].any()
    v2 = decode({"inputs": [{"name": "history", "shape": [2, 5], "datatype": "INT64",
                             "data": [*history, *history[:2], -1, -1, -1]}], "parameters": {"k": 3}})  # fmt: skip
    assert v2.form == "v2" and dict(v2.options)["k"] == (3, 3)
    np.testing.assert_array_equal(v2.rows[0], row)
    # A repeated id counts once, at its latest place; a known user is their training history.
    assert [int(catalogue.ids[i]) for i in decode({"history": [50, 172, 50]}).rows[0, 0]] == [172, 50]
    user = decode({"user": 196}).rows[0]
    assert [int(catalogue.ids[i]) for i in user[0]] == [catalogue.ids[i] for i in catalogue.users[196]]
    assert user[1].sum() == min(CONTRACT.window, len(catalogue.users[196]))


@pytest.mark.parametrize(
    "doc, status, code",
    [
        ({"user": 10**6}, 400, "unknown_user"),
        ({"user": "196"}, 400, "wrong_type"),
        ({"user": True}, 400, "wrong_type"),
        ({"history": []}, 400, "empty_history"),
        ({"history": [50, 999999]}, 400, "unknown_item"),
        ({"history": [50, -1]}, 400, "unknown_item"),
        ({"history": [50.0]}, 400, "wrong_type"),
        ({"history": ["50"]}, 400, "wrong_type"),
        ({"history": 50}, 400, "wrong_type"),
        ({"history": [50], "k": 10**9}, 400, "k_out_of_range"),
        ({"history": [50], "k": 0}, 400, "k_out_of_range"),
        ({"history": [50], "k": 10.0}, 400, "wrong_type"),
        ({"history": [50], "exclude_seen": "no"}, 400, "wrong_type"),
        ({"history": [50], "user": 196}, 400, "unsupported_input"),
        ({"items": [50]}, 400, "unsupported_input"),
        ({"history": [50], "limit": 3}, 400, "unknown_field"),
        ({"history": list(range(1, 2050))}, 413, "history_too_long"),
        ([], 400, "wrong_shape"),
        ({"inputs": [{"name": "h", "shape": [1, 2], "datatype": "FP32", "data": [50, 172]}]}, 400, "wrong_datatype"),
        ({"inputs": [{"name": "h", "shape": [1, 3000], "datatype": "INT64", "data": [50] * 3000}]}, 413,
         "history_too_long"),
    ],
)  # fmt: skip
def test_each_bad_ask_is_refused_by_name(catalogue, doc, status, code):
    assert refusal(doc) == (status, code)


def test_answers_list_titles_and_never_an_excluded_item(catalogue):
    """An output row with excluded (masked) items: they are left out, k caps the rest."""
    decoded = decode([{"history": [50], "k": 3}, {"history": [50], "k": 1}])
    masked = CONTRACT.MASKED_SCORE
    outputs = np.asarray([[[9.0, masked, 7.0, 6.0], [0, 49, 2, 3]]] * 2, np.float32)
    answers = codec.encode_outputs(outputs, decoded, CONTRACT, "movielens")
    assert [[a["item"] for a in answer] for answer in answers] == [[1, 3, 4], [1]]
    assert answers[0][0]["title"] == catalogue.titles[0] and answers[0][0]["score"] == 9.0


def test_top_k_parity_allows_swapped_ties_only():
    expected = torch.tensor([[[5.0, 4.0, 4.0, 1.0], [7, 8, 9, 3]]])
    tied_swap = torch.tensor([[[5.0, 4.0, 4.0, 1.0], [7, 9, 8, 3]]])
    assert ranking_parity(expected, tied_swap, 1e-4).passed
    other_order = torch.tensor([[[5.0, 4.0, 4.0, 1.0], [8, 7, 9, 3]]])
    assert not ranking_parity(expected, other_order, 1e-4).passed
    other_item = torch.tensor([[[5.0, 4.0, 4.0, 1.0], [7, 2, 9, 3]]])
    assert not ranking_parity(expected, other_item, 1e-4).passed
    # At the last rank, an item eager left out may come in when it ties that rank's score.
    assert ranking_parity(expected, torch.tensor([[[5.0, 4.0, 4.0, 1.0], [7, 8, 9, 2]]]), 1e-4).passed
    assert not ranking_parity(expected, torch.tensor([[[5.0, 4.0, 4.0, 1.5], [7, 8, 9, 2]]]), 1e-4).passed


def test_the_build_beats_popularity_and_both_exports_keep_the_top_k(built):
    metrics = json.loads((built.artifacts / "movielens" / "metrics.json").read_text())["test"]
    assert metrics["hr_at_10"] > metrics["popularity_hr_at_10"] > 0
    assert metrics["ndcg_at_10"] > metrics["popularity_ndcg_at_10"] > 0
    assert metrics["lift_over_popularity"] >= SPEC.gate.threshold
    for runtime in SPEC.formats:
        gates = {
            g["gate"]: g for g in json.loads((built.exported("movielens", runtime).parent / "gates.json").read_text())
        }
        assert gates["parity"]["passed"] and "not between tied scores" in gates["parity"]["detail"]
        assert gates["quality"]["value"] == pytest.approx(metrics["lift_over_popularity"], abs=1e-6)


def test_histories_of_different_lengths_in_one_call_are_each_counted(built, tmp_path):
    """A pass padded to its longest history: each ask is counted once, by its own ids (its
    length and popularity) and its top score, never by the padding."""
    from handlers import monitoring
    from tests.test_handler_inprocess import load, run

    handler, ctx = load(built, "movielens", tmp_path)
    profile = handler.card["reference_profile"]
    assert {s["name"] for s in profile["signals"]} == {"history_length", "history_popularity", "top_score"}
    short, long = {"history": [50, 172]}, {"history": list(range(1, 301))}
    _, statuses = run(handler, ctx, [{"body": json.dumps(short).encode()}, {"body": json.dumps(long).encode()}])
    assert statuses == [200, 200]
    counts = handler.monitor.take()
    per_signal = {
        name: sum(n for (_, s, _), n in counts.rows.items() if s == name) for name in ("history_length", "top_score")
    }
    assert counts.requests == {"answered": 2} and per_signal == {"history_length": 2, "top_score": 2}
    length = next(s for s in profile["signals"] if s["name"] == "history_length")
    buckets = sorted(b for (_, s, b), n in counts.rows.items() if s == "history_length")
    assert buckets == sorted(monitoring.bucket_of(length, np.array([2, 300])).tolist())
