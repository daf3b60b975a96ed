"""The distributed deployment (PostgreSQL + Milvus for dense and BM25) answers as the embedded one (SQLite + FAISS +
tantivy): the same index moved with `qa migrate` (nothing re-embedded), asked the same questions through the same
`Retriever`. On the seeds the top-10 is the same; on both eval sets (evalsets/) R@1 is within half a point and most
top-10 lists are the same list.

What may differ, and why: tantivy stores each passage's length in one byte (Lucene's norm) where Milvus keeps it
exactly, so BM25 scores differ by a few percent and near-ties can swap; the engines' float sums differ in the last
bits.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.common import EVAL
from qa.chunking import CHUNKING
from qa.eval import build_index, evaluate, read_questions
from qa.migrate import copy_database
from qa.retriever import Retriever
from qa.store import Store
from qa.vectors import VectorConfig

pytest.importorskip("pymilvus")

SEED_QUESTIONS = [
    "Ai chủ trì cuộc họp Ban chỉ đạo Chương trình 01?",
    "Quận Nam Từ Liêm kết nạp bao nhiêu đảng viên?",
    "gia vang hom nay",
    "Hà Nội mưa ngập ở đâu?",
    "bitcoin price",
    "Hạn chót nộp hồ sơ là khi nào?",
]


def distributed_copy(embedded: Store, folder: Path, database_url: str, milvus_uri: str, prefix: str) -> Store:
    copy_database(f"sqlite:///{embedded.path / 'store.sqlite'}", database_url)
    vectors = VectorConfig(backend="milvus", milvus_uri=milvus_uri, milvus_collection=prefix)
    return Store.open(folder, vectors=vectors, lexical_backend="milvus", database_url=database_url)


@pytest.fixture
def fresh_pg(postgres_url: str) -> Iterator[str]:
    from tests.postgres import fresh_database

    with fresh_database(postgres_url) as url:
        yield url


def top10(retriever: Retriever, question: str) -> list[tuple[str, float]]:
    return [(h.passage.id, h.score) for h in retriever.search(question, 10, with_highlights=False).hits]


def same_list(a: list[tuple[str, float]], b: list[tuple[str, float]], tie: float = 0.02) -> bool:
    """The same ranking up to ties: two passages ranked in opposite orders score within `tie` of each other (in
    both lists), and a passage in one list only scores within `tie` of that list's last place."""
    score_a, score_b = dict(a), dict(b)
    for ours, theirs in ((a, score_b), (b, score_a)):
        last = ours[-1][1] if ours else 0.0
        if any(pid not in theirs and s > last + tie for pid, s in ours):
            return False
    both = [pid for pid, _ in a if pid in score_b]
    for i, x in enumerate(both):
        for y in both[i + 1 :]:
            if score_b[x] < score_b[y] - 1e-6 and (score_a[x] - score_a[y] > tie or score_b[y] - score_b[x] > tie):
                return False
    return True


@pytest.mark.slow
def test_seeds_give_the_same_top10_in_both_deployments(service, fresh_pg, milvus_uri, milvus_collections, tmp_path):
    store = distributed_copy(service.store, tmp_path / "replica", fresh_pg, milvus_uri, milvus_collections)
    try:
        embedded, distributed = Retriever(service.store, service.encoder), Retriever(store, service.encoder)
        for question in SEED_QUESTIONS:
            assert same_list(top10(embedded, question), top10(distributed, question)), question
            a = embedded.search(question, 5)
            b = distributed.search(question, 5)
            assert (a.answer is None) == (b.answer is None), question
            if a.answer is not None and b.answer is not None:
                assert a.answer.text == b.answer.text, question
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["xquad_vi", "mlqa_vi_dev"])
def test_eval_sets_score_the_same_in_both_deployments(
    name, encoder, eval_data_dir, fresh_pg, milvus_uri, milvus_collections, tmp_path
):
    folder = EVAL / name
    embedded = build_index(
        folder / "contexts.jsonl", encoder, chunking=CHUNKING, cache_dir=eval_data_dir / "eval-cache", progress=False
    )
    store = distributed_copy(embedded, tmp_path / "replica", fresh_pg, milvus_uri, milvus_collections)
    try:
        questions = read_questions(folder / "retrieval.jsonl")
        ours, theirs = Retriever(embedded, encoder), Retriever(store, encoder)
        a = evaluate(ours, questions, progress=False)
        b = evaluate(theirs, questions, progress=False)
        print(f"\n{name}: R@1 {a.recall[1]:.4f} embedded, {b.recall[1]:.4f} distributed; R@10 {a.recall[10]:.4f}, "
              f"{b.recall[10]:.4f}; answer@1 {a.extra['answer@1']:.4f}, {b.extra['answer@1']:.4f}")  # fmt: skip
        assert abs(a.recall[1] - b.recall[1]) <= 0.005, (a.recall, b.recall)
        assert abs(a.recall[10] - b.recall[10]) <= 0.005, (a.recall, b.recall)
        sample = questions[::7]
        same = sum(same_list(top10(ours, q.question), top10(theirs, q.question)) for q in sample)
        assert same >= 0.9 * len(sample), f"{same} of {len(sample)} top-10 lists agree"
    finally:
        store.close()
        embedded.close()
