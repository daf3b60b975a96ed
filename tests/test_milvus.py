"""Milvus (embedded milvus-lite) and FAISS-flat agree: the same top-10 for real questions over real passages."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from benchmarks.common import EVAL
from qa.chunking import CHUNKING, chunk_article
from qa.corpus import read_articles
from qa.domain import Article, encoder_input
from qa.vectors import VectorConfig
from qa.vectors.faiss import FaissIndex

pytest.importorskip("pymilvus", reason="pymilvus is not installed: pip install pymilvus milvus-lite")
pytest.importorskip("milvus_lite", reason="milvus-lite is not installed: pip install milvus-lite")

from qa.vectors.milvus import MilvusIndex  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
XQUAD = EVAL / "xquad_vi"


def _corpus() -> tuple[list[str], list[str]]:
    """Passage inputs of the seeds and the XQuAD-vi contexts, and questions about them."""
    articles = list(read_articles([REPO / "seeds"]))
    questions = ["Giá xăng tăng bao nhiêu?", "Ai chủ trì cuộc họp?", "Thời tiết Hà Nội thế nào?"]
    for line in (XQUAD / "contexts.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        articles.append(Article(row["context_id"], row["title"], row["text"], datetime(2024, 1, 1), None, None))
    with (XQUAD / "retrieval.jsonl").open(encoding="utf-8") as fh:
        questions += [json.loads(line)["question"] for _, line in zip(range(60), fh, strict=False)]
    passages = [encoder_input(a.title, p.text) for a in articles for p in chunk_article(a, **CHUNKING)]
    return passages, questions


@pytest.fixture(scope="module")
def vectors(encoder) -> tuple[np.ndarray, np.ndarray]:
    passages, questions = _corpus()
    return encoder.encode_passages(passages), encoder.encode_queries(questions)


@pytest.mark.slow
def test_faiss_flat_and_milvus_agree(vectors, tmp_path: Path) -> None:
    passages, queries = vectors
    keys = np.arange(len(passages), dtype=np.int64) * 5 + 11
    config = VectorConfig(backend="milvus", milvus_uri=str(tmp_path / "milvus.db"))
    milvus = MilvusIndex.attach(config, passages.shape[1], "test", directory=tmp_path, fresh=True)
    flat = FaissIndex(passages.shape[1], "flat", directory=tmp_path / "flat")
    for index in (milvus, flat):
        index.add(keys, passages)
        index.remove(keys[:7])  # deletes agree too
    expected = flat.search(queries, 10)
    found = milvus.search(queries, 10)
    for f_keys, m_keys, f_scores, m_scores in zip(
        expected.keys, found.keys, expected.scores, found.scores, strict=True
    ):
        assert set(f_keys) == set(m_keys) or np.isclose(f_scores[-1], f_scores[-2], atol=1e-5)
        assert np.allclose(f_scores, m_scores, atol=1e-4)
    same_order = np.mean(expected.keys == found.keys)
    assert same_order >= 0.98, same_order  # only exact near-ties may swap places

    allowed = keys[7:200:3]
    assert np.array_equal(flat.search(queries[:5], 10, allowed).keys, milvus.search(queries[:5], 10, allowed).keys)

    milvus.close()
    reopened = MilvusIndex.attach(config, passages.shape[1], "test", directory=tmp_path, fresh=False)
    assert len(reopened) == len(keys) - 7
    assert np.array_equal(reopened.search(queries[:5], 10).keys, found.keys[:5])
    reopened.close()
