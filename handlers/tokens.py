"""Texts as model rows: the tokenizer, and token ids with attention masks packed as one int64
array. Shared by the text codec (serving) and a text model's own evaluation (models/), so both
tokenize exactly alike."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np


@cache
def tokenizer(path: str, max_tokens: int):
    """The contract's tokenizer, loaded once per worker: truncating, never padding."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    tok.enable_truncation(max_length=max_tokens)
    tok.no_padding()
    return tok


def pack(encodings: list, length: int | None = None) -> np.ndarray:
    """Token ids and attention masks as (k, 2, L) int64, zero-padded to the longest (or `length`)."""
    longest = length or max(len(e.ids) for e in encodings)
    rows = np.zeros((len(encodings), 2, longest), np.int64)
    for i, e in enumerate(encodings):
        rows[i, 0, : len(e.ids)] = e.ids
        rows[i, 1, : len(e.ids)] = e.attention_mask
    return rows


def trim_padding(rows):
    """Rows (NumPy or torch) cut to the longest sequence among them: padding past it is idle."""
    return rows[..., : max(1, int(rows[:, 1].sum(-1).max()))]


@dataclass(frozen=True)
class TokenKinds:
    """Per token id: special ([CLS], [SEP], <s>...), unknown, or the continuation of a word."""

    special: np.ndarray
    unknown: np.ndarray
    continuation: np.ndarray


@cache
def token_kinds(path: str, max_tokens: int) -> TokenKinds:
    """The vocabulary's token kinds, once per worker. WordPiece marks a continuation with "##";
    SentencePiece-style vocabularies mark a word's start with "▁" instead."""
    tok = tokenizer(path, max_tokens)
    vocab = tok.get_vocab(with_added_tokens=True)
    size = max(vocab.values()) + 1
    special, unknown, continuation = (np.zeros(size, bool) for _ in range(3))
    added = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}
    unk = getattr(tok.model, "unk_token", None)
    wordpiece = any(t.startswith("##") for t in vocab)
    for token, i in vocab.items():
        special[i] = token in added
        unknown[i] = token == unk
        continuation[i] = token.startswith("##") if wordpiece else not token.startswith("▁")
    return TokenKinds(special, unknown, continuation)
