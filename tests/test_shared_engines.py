"""The distributed store: rows in PostgreSQL, dense vectors and BM25 in one Milvus server (`milvus-lite server`), two
`Store`s over them standing for two replicas. A write through one is searchable through the other as soon as it has
returned; filters run inside Milvus; a crash between the commit and Milvus's deletes is repaired; the term counts the
database keeps equal a recount; and the BM25 ranking agrees with tantivy's."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from qa import database as db
from qa.domain import Article
from qa.indexing import Indexer
from qa.query import Query
from qa.restore import restore
from qa.schemas import Filters
from qa.storage.records import passage_rows
from qa.storage.terms import term_counts
from qa.store import Store
from qa.vectors import VectorConfig
from tests.fakes import SMALL_CHUNKING, HashingEncoder

pytest.importorskip("pymilvus")

ENC = HashingEncoder()
BODIES = {
    "hop": "Phó Thủ tướng Hoàng Trung Hải chủ trì cuộc họp Ban Chỉ đạo Chương trình 01 tại Hà Nội.",
    "gia": "Giá xăng RON 95 tăng 1,5% từ chiều nay, lên 25.000 đồng một lít.",
    "mua": "Hà Nội mưa to kéo dài, nhiều tuyến phố ở quận Đống Đa ngập sâu.",
    "dang": "Quận Nam Từ Liêm kết nạp 120 đảng viên mới trong năm 2023.",
}


def article(article_id: str, body: str, *, source: str = "VnExpress", day: int = 1) -> Article:
    return Article(article_id, f"Tin {article_id}", body, datetime(2024, 3, day, 8, 0), source, None)


def open_store(folder: Path, database_url: str, prefix: str, *, create: bool = False) -> Store:
    options = {
        "vectors": VectorConfig(backend="milvus", milvus_uri=MILVUS["uri"], milvus_collection=prefix),
        "lexical_backend": "milvus",
        "database_url": database_url,
    }
    if create:
        return Store.create(folder, model=ENC.name, dim=ENC.dim, chunking=SMALL_CHUNKING, **options)
    return Store.open(folder, **options)


MILVUS: dict[str, str] = {}


@pytest.fixture
def replicas(tmp_path, postgres_url, milvus_uri, milvus_collections):
    """Two stores (replicas) over one fresh PostgreSQL database and one Milvus."""
    from tests.postgres import fresh_database

    MILVUS["uri"] = milvus_uri
    with fresh_database(postgres_url) as url:
        a = open_store(tmp_path / "a", url, milvus_collections, create=True)
        b = open_store(tmp_path / "b", url, milvus_collections)
        yield a, b, url
        a.close()
        b.close()


def lexical_ids(store: Store, question: str, filters: Filters | None = None) -> list[str]:
    keys = store.search_lexical(Query.parse(question), 10, scope=store.scope(filters)).keys.tolist()
    found = store.passages_by_key(keys)
    return [found[k].article.id for k in keys if k in found]


def dense_ids(store: Store, text: str, filters: Filters | None = None) -> list[str]:
    _, keys = store.search(ENC.encode_queries([text]), 5, scope=store.scope(filters))
    found = store.passages_by_key([int(k) for k in keys[0] if k >= 0])
    return [found[int(k)].article.id for k in keys[0] if int(k) in found]


def recount(store: Store) -> dict[tuple[str, str], int]:
    with store.engine.connect() as conn:
        texts = [row.text for rows in passage_rows(conn, vector=False) for row in rows]
    counts = term_counts(texts)
    return {k: v for k, v in counts.items() if v}


def stored_counts(url: str) -> dict[tuple[str, str], int]:
    engine = db.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(db.term_stats.c.field, db.term_stats.c.term, db.term_stats.c.docs)).all()
    engine.dispose()
    return {(f, t): int(n) for f, t, n in rows if n and (f, t) != ("", "")}


def test_a_write_through_one_replica_is_searchable_through_the_other(replicas) -> None:
    a, b, url = replicas
    Indexer(a, ENC, chunking=SMALL_CHUNKING).add([article(i, body) for i, body in BODIES.items()], origin="api")
    assert lexical_ids(b, "ai chủ trì cuộc họp")[:1] == ["hop"]
    assert lexical_ids(b, "gia xang tang bao nhieu")[:1] == ["gia"]  # the folded field
    assert dense_ids(b, BODIES["mua"])[:1] == ["mua"]
    assert b.manifest().passages == a.manifest().passages and b.manifest().generation == a.manifest().generation

    Indexer(b, ENC, chunking=SMALL_CHUNKING).add([article("hop", "Cuộc họp được hoãn sang tuần sau.")], origin="api")
    assert "hop" not in lexical_ids(a, "Hoàng Trung Hải chủ trì")
    assert lexical_ids(a, "cuộc họp hoãn")[:1] == ["hop"]
    b.delete(["mua"])
    assert "mua" not in lexical_ids(a, "mưa to Đống Đa") and "mua" not in dense_ids(a, BODIES["mua"])
    # Nothing is left behind in Milvus: every row there is a passage of the database.
    assert len(a.index) == a.manifest().passages
    assert stored_counts(url) == recount(a)
    assert len(a.lexical) == a.manifest().passages  # the term counts' N


def test_filters_run_inside_milvus(replicas) -> None:
    a, b, _ = replicas
    items = [
        article("hop", BODIES["hop"], source="Tuổi Trẻ", day=1),
        article("gia", BODIES["gia"], source='Báo "Lao Động"', day=5),
        article("mua", BODIES["mua"], source="VnExpress", day=9),
        Article("dang", "Tin dang", BODIES["dang"], None, "VnExpress", None),
    ]
    Indexer(a, ENC, chunking=SMALL_CHUNKING).add(items, origin="api")
    question = "Hà Nội quận Đống Đa Nam Từ Liêm Hoàng Trung Hải giá xăng"
    assert set(lexical_ids(b, question)) == {"hop", "gia", "mua", "dang"}
    assert set(lexical_ids(b, question, Filters(sources=['Báo "Lao Động"']))) == {"gia"}
    assert set(lexical_ids(b, question, Filters(published_from=datetime(2024, 3, 4)))) == {"gia", "mua"}
    # An article without a date passes no date filter, from either side.
    assert set(lexical_ids(b, question, Filters(published_to=datetime(2024, 3, 6)))) == {"hop", "gia"}
    assert set(lexical_ids(b, question, Filters(article_ids=["dang", "hop"]))) == {"dang", "hop"}
    assert set(dense_ids(b, question, Filters(sources=["VnExpress"], article_ids=["mua", "gia"]))) == {"mua"}
    assert dense_ids(b, question, Filters(sources=["nowhere"])) == []


def test_deletes_left_pending_by_a_crash_are_replayed(replicas) -> None:
    a, b, url = replicas
    indexer = Indexer(a, ENC, chunking=SMALL_CHUNKING)
    indexer.add([article(i, body) for i, body in BODIES.items()], origin="api")
    # A replica that died after its commit and before Milvus's deletes: its pending keys are still recorded.
    a._indexes.after_commit = lambda change: None  # type: ignore[method-assign]
    indexer.add([article("gia", "Giá vàng giảm nhẹ.")], origin="api")
    engine = db.create_engine(url)
    with engine.connect() as conn:
        pending = conn.execute(sa.select(sa.func.count()).select_from(db.pending_deletes)).scalar_one()
    engine.dispose()
    assert pending > 0
    assert len(b.index) > b.manifest().passages  # the old passages are still in Milvus (a search skips them)
    assert "gia" not in lexical_ids(b, "xăng RON 95")
    b.delete(["mua"])  # any later write (or open) replays them
    assert len(b.index) == b.manifest().passages
    assert stored_counts(url) == recount(b)


def test_a_replica_refills_collections_the_engine_lost(replicas, tmp_path) -> None:
    a, _, url = replicas
    Indexer(a, ENC, chunking=SMALL_CHUNKING).add([article(i, body) for i, body in BODIES.items()], origin="api")
    expected = lexical_ids(a, "ai chủ trì cuộc họp"), a.manifest().passages
    a.index._client.drop_collection(a.index.collection)  # Milvus lost its data; the database says "complete"
    a.lexical._client.drop_collection(a.lexical.collection)
    c = open_store(tmp_path / "c", url, a.vectors.milvus_collection)
    assert (lexical_ids(c, "ai chủ trì cuộc họp"), len(c.index)) == expected
    assert stored_counts(url) == recount(c)
    c.close()


def test_a_replica_fills_missing_collections_from_the_database(replicas, tmp_path) -> None:
    a, _, url = replicas
    Indexer(a, ENC, chunking=SMALL_CHUNKING).add([article(i, body) for i, body in BODIES.items()], origin="api")
    expected = lexical_ids(a, "ai chủ trì cuộc họp"), a.manifest().passages
    a.index._client.drop_collection(a.index.collection)
    a.lexical._client.drop_collection(a.lexical.collection)
    engine = db.create_engine(url)
    with engine.begin() as conn:  # as if they had never been filled
        conn.execute(sa.delete(db.meta).where(db.meta.c.key.like("engine:%")))
        conn.execute(sa.delete(db.term_stats))
    engine.dispose()
    c = open_store(tmp_path / "c", url, a.vectors.milvus_collection)
    assert (lexical_ids(c, "ai chủ trì cuộc họp"), len(c.index)) == expected
    assert stored_counts(url) == recount(c)
    c.close()


def test_bm25_in_milvus_ranks_as_tantivy(replicas, tmp_path) -> None:
    """The same passages in both engines: the same best match, scores within a few percent (tantivy stores document
    lengths in a byte, Milvus exactly). Sealed first: milvus-lite scores the rows not yet flushed into a segment with
    statistics of their own (docs/scaling.md, "Milvus")."""
    a, _, _ = replicas
    local = Store.create(tmp_path / "local", model=ENC.name, dim=ENC.dim, chunking=SMALL_CHUNKING)
    items = [article(i, body) for i, body in BODIES.items()]
    for store in (a, local):
        Indexer(store, ENC, chunking=SMALL_CHUNKING).add(items, origin="api")
    a.lexical.save(0)
    for question in ("ai chủ trì cuộc họp", "gia xang bao nhieu", "Đống Đa ngập", "đảng viên mới năm 2023", "1,5%"):
        query = Query.parse(question)
        ours, theirs = a.search_lexical(query, 3), local.search_lexical(query, 3)
        ids = [a.passages_by_key([k])[k].article.id for k in ours.keys.tolist()]
        expected = [local.passages_by_key([k])[k].article.id for k in theirs.keys.tolist()]
        assert ids[:1] == expected[:1], question
        assert np.allclose(ours.scores[:1], theirs.scores[:1], rtol=0.1), (question, ours, theirs)
        assert a.idf(["chủ", "trì"], False) == pytest.approx(local.idf(["chủ", "trì"], False))
    local.close()


def test_a_milvus_restart_is_an_error_while_down_then_searches_and_writes_resume(tmp_path, postgres_url) -> None:
    """While Milvus is down a search or a write raises `MilvusError` (the API's 503) and the write is not committed;
    once it is back, the same store searches and writes again without being reopened (Milvus brings its
    collections back released: they are loaded again on first use)."""
    from qa.milvus import MilvusError
    from tests.milvus import milvus_server
    from tests.postgres import fresh_database

    with milvus_server() as server, fresh_database(postgres_url) as url:
        MILVUS["uri"] = server.uri
        store = open_store(tmp_path / "a", url, "restart", create=True)
        indexer = Indexer(store, ENC, chunking=SMALL_CHUNKING)
        indexer.add([article("hop", BODIES["hop"])], origin="api")
        server.stop()
        with pytest.raises(MilvusError):
            lexical_ids(store, "ai chủ trì cuộc họp")
        with pytest.raises(MilvusError):
            indexer.add([article("gia", BODIES["gia"])], origin="api")
        assert store.article("gia") is None  # rolled back
        server.start()
        assert lexical_ids(store, "ai chủ trì cuộc họp") == ["hop"]
        assert dense_ids(store, BODIES["hop"]) == ["hop"]
        indexer.add([article("gia", BODIES["gia"])], origin="api")
        assert lexical_ids(store, "giá xăng") == ["gia"]
        store.close()


def test_a_replica_restores_tone_marks_as_the_embedded_store_does(replicas, tmp_path) -> None:
    """Tone-mark restoration reads the pairs' counts from the database's `term_stats` in the distributed deployment,
    from tantivy in the embedded one: the same passages give the same counts, so the same restorations."""
    a, b, _ = replicas
    local = Store.create(tmp_path / "local", model=ENC.name, dim=ENC.dim, chunking=SMALL_CHUNKING)
    items = [article(i, body) for i, body in BODIES.items()]
    for store in (a, local):
        Indexer(store, ENC, chunking=SMALL_CHUNKING).add(items, origin="api")
    pairs = ["chủ_trì", "cuộc_họp", "hà_nội", "đảng_viên", "viên_mới", "họp_ban", "không_có"]
    assert b.term_counts().doc_freqs("phrases", pairs) == local.term_counts().doc_freqs("phrases", pairs)
    assert b.term_counts().doc_freqs("phrases", pairs)[:4] == [1, 1, 2, 1]
    for question in ("ai chu tri cuoc hop Ban Chi dao?", "gia xang tang bao nhieu", "ha noi mua to"):
        ours = restore(Query.parse(question), b.term_counts())
        assert ours is not None and ours == restore(Query.parse(question), local.term_counts()), question
    assert restore(Query.parse("ai chu tri cuoc hop"), b.term_counts()).text == "ai chủ trì cuộc họp"  # type: ignore[union-attr]
    local.close()
