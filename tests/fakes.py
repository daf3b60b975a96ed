"""Test doubles: a tiny deterministic encoder so store and indexing tests run without loading a model."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from qa.text import tokenize

# Small passages, so a few sentences make several: what the `store` fixture (conftest.py) is created with.
SMALL_CHUNKING = {"target_words": 20, "max_words": 30, "min_words": 5, "overlap_sentences": 1}


class HashingEncoder:
    """Bag of hashed tokens, L2-normalised: texts sharing words get similar vectors."""

    def __init__(self, dim: int = 64, name: str = "hashing-test-encoder") -> None:
        self.dim = dim
        self.name = name
        self.calls = 0

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for token in tokenize(text):
            h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
            v[h % self.dim] += 1.0
        norm = np.linalg.norm(v)
        return v / norm if norm else v

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return np.vstack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def encode_passages(self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        return self.encode_queries(texts)
