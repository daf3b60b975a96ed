"""Writes to a store as fast as it can until killed: the subject of the kill -9 tests in test_crash.py.

Run as `python -m tests.crash_worker INDEX_DIR SEED`. Prints `started`, then `committed GENERATION` after each
write returns, so the test can kill it after a chosen number of writes and check that each one it was told of
survived. The writes depend on SEED only.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from qa.domain import Article
from qa.indexing import Indexer
from qa.store import Store
from tests.fakes import HashingEncoder

CHUNKING = {"target_words": 20, "max_words": 30, "min_words": 5, "overlap_sentences": 1}
WORDS = "Hà Nội quận đảng viên ngân sách đại hội nghị quyết thành ủy cơ sở chỉ đạo công tác năm".split()


def body(rng: random.Random, version: int) -> str:
    sentences = [
        f"Phiên bản {version} câu {i} " + " ".join(rng.choices(WORDS, k=rng.randint(5, 15))) + "."
        for i in range(rng.randint(3, 12))
    ]
    return " ".join(sentences)


def articles(rng: random.Random, ids: list[int], version: int) -> list[Article]:
    return [
        Article(
            id=f"a{i}",
            title=f"Bài {i}",
            body=body(rng, version),
            published_at=None,
            source=None,
            author=None,
            fingerprint=f"{i}-{version}",
        )
        for i in ids
    ]


def main(path: Path, seed: int) -> None:
    encoder = HashingEncoder()
    store = (
        Store.open(path)
        if path.exists()
        else Store.create(path, model=encoder.name, dim=encoder.dim, chunking=CHUNKING)
    )
    indexer = Indexer(store, encoder, chunking=CHUNKING, batch_size=8)
    rng = random.Random(seed)
    version = 0
    print("started", flush=True)
    while True:
        version += 1
        ids = rng.sample(range(40), rng.randint(1, 8))
        if rng.random() < 0.2:
            indexer.delete([f"a{i}" for i in ids])
        else:
            indexer.add(articles(rng, ids, version), origin="api", commit_every=rng.choice([1, 10, 1000]))
        print(f"committed {store.manifest().generation}", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
