"""Re-posting articles whose content did not change: reported `unchanged`, nothing encoded or written again."""

from __future__ import annotations

from fastapi.testclient import TestClient

from qa.api import create_app
from qa.chunking import CHUNKING
from qa.config import Settings
from qa.indexing import Indexer
from qa.retriever import Retriever
from qa.service import Service
from qa.store import Store
from tests.fakes import HashingEncoder


class CountingEncoder(HashingEncoder):
    """Counts the passage texts it is asked to encode."""

    def __init__(self) -> None:
        super().__init__()
        self.encoded = 0

    def encode_passages(self, texts, *, batch_size=32, show_progress=False):
        self.encoded += len(texts)
        return super().encode_passages(texts, batch_size=batch_size)


def _article(article_id: str, body: str) -> dict[str, str]:
    return {"id": article_id, "title": f"Tin {article_id}", "body": body, "source": "TEST"}


def test_unchanged_articles_cost_no_encoding(tmp_path):
    encoder = CountingEncoder()
    settings = Settings(data_dir=tmp_path, seeds=tmp_path / "none")
    store = Store.create(tmp_path / "default", model=encoder.name, dim=encoder.dim, chunking=CHUNKING)
    service = Service(
        settings, encoder, store, Indexer(store, encoder, chunking=CHUNKING), Retriever(store, encoder), 0.0
    )  # type: ignore[arg-type]
    try:
        client = TestClient(create_app(service=service))
        body = "Cây cầu đi bộ qua sông Tô Lịch dài 45 mét. Cầu được xây trong 6 tháng với vốn 12 tỷ đồng."
        articles = [_article(f"a{n}", f"{body} Bài số {n}.") for n in range(5)]
        first = client.post("/v1/articles", json={"articles": articles}).json()
        assert [a["status"] for a in first["data"]] == ["created"] * 5 and all(a["created"] for a in first["data"])
        encoded, generation = encoder.encoded, store.manifest().generation
        assert encoded > 0

        again = client.post("/v1/articles", json={"articles": articles}).json()
        assert [a["status"] for a in again["data"]] == ["unchanged"] * 5
        assert [a["passages"] for a in again["data"]] == [a["passages"] for a in first["data"]]
        assert not any(a["created"] for a in again["data"])
        assert encoder.encoded == encoded and store.manifest().generation == generation  # nothing encoded or written

        articles[2] = _article("a2", f"{body} Bài số 2, đã sửa.")
        mixed = client.post("/v1/articles", json={"articles": [*articles, _article("new", body)]}).json()
        assert [a["status"] for a in mixed["data"]] == ["unchanged"] * 2 + ["updated"] + ["unchanged"] * 2 + ["created"]
        assert encoder.encoded > encoded
        assert store.article("a2") is not None and "đã sửa" in store.article("a2").body  # type: ignore[union-attr]
    finally:
        store.close()
