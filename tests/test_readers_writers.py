"""Questions never wait for writes: a write held in its slow steps (the lexical engine's commit, the index files'
save) leaves every read free, and a read sees one generation of both derived indexes, the old one until the write
publishes, the new one after. The article and passage counts the meta rows keep equal a recount, and an index built
past the size that calls for another vector index kind opens with nothing to rebuild."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from qa import database as db
from qa.query import Query
from qa.schemas import Filters
from qa.store import FAISS_FILE, Store
from tests.fakes import SMALL_CHUNKING
from tests.test_store import BODY_A, BODY_B, ENC, item, make_article, rows

# Generous: only reached when a read is blocked, which is the failure under test (the normal path waits on events).
STUCK_S = 60.0
QUESTION_B = "Đảng bộ quận Nam Từ Liêm có bao nhiêu đảng viên"


@contextmanager
def held(obj: Any, method: str) -> Iterator[tuple[threading.Event, threading.Event]]:
    """`obj.method` runs as it does, then waits inside until released: (entered, release)."""
    entered, release = threading.Event(), threading.Event()
    real = getattr(obj, method)

    def waiting(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        entered.set()
        assert release.wait(STUCK_S), "the test never released the write"
        return result

    setattr(obj, method, waiting)
    try:
        yield entered, release
    finally:
        release.set()
        setattr(obj, method, real)


def in_thread(work: Callable[[], Any]) -> Any:
    """`work()` on another thread; fails if it does not finish (it waited for the write)."""
    out: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append(work())
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(STUCK_S)
    assert not thread.is_alive(), "a read waited for the write"
    if errors:
        raise errors[0]
    return out[0]


def articles_found(store: Store) -> dict[str, set[str]]:
    """Which articles each kind of read finds for the question about article b."""
    _, dense = store.search(ENC.encode_queries([QUESTION_B]), 10)
    lexical = store.search_lexical(Query.parse(QUESTION_B), 10).keys.tolist()
    keys = [int(k) for k in dense[0] if k >= 0] + lexical
    found = store.passages_by_key(keys)
    filtered = store.keys_matching(Filters(article_ids=["a", "b"]))
    return {
        "dense": {found[int(k)].article.id for k in dense[0] if int(k) in found},
        "lexical": {found[k].article.id for k in lexical if k in found},
        "lexical scored": {
            found[k].article.id
            for k, s in zip(lexical, store.lexical_scores(Query.parse(QUESTION_B), lexical), strict=True)
            if s > 0 and k in found
        },  # fmt: skip
        "dense scored": {
            found[k].article.id
            for k, s in zip(keys, store.dense_scores(ENC.encode_queries([QUESTION_B])[0], keys), strict=True)
            if np.isfinite(s) and k in found
        },  # fmt: skip
        "database": {s.article.id for s in store.passages_by_key(filtered.tolist()).values()},
    }


def write_b(store: Store) -> threading.Thread:
    writer = threading.Thread(target=lambda: store.upsert([item(make_article("b", BODY_B))], origin="api"))
    writer.start()
    return writer


def test_reads_go_on_while_a_write_commits_to_the_lexical_engine_and_see_the_old_generation(store):
    store.upsert([item(make_article("a", BODY_A))], origin="seed")
    before = store.manifest().generation
    with held(store.lexical, "apply") as (entered, release):  # tantivy has committed; nothing is published yet
        writer = write_b(store)
        assert entered.wait(STUCK_S)
        seen = in_thread(lambda: articles_found(store))
        # The database has committed b; both derived indexes still answer as at the generation before it.
        assert seen["database"] == {"a", "b"} and store.manifest().generation == before + 1
        assert seen["dense"] == seen["lexical"] == seen["dense scored"] == {"a"}
        assert seen["lexical scored"] <= {"a"}
        assert in_thread(lambda: store.idf(["đảng"], folded=False)) == store.idf(["đảng"], folded=False)
        release.set()
        writer.join(STUCK_S)
    assert not writer.is_alive()
    after = articles_found(store)
    assert "b" in after["dense"] and "b" in after["lexical"]


def test_reads_go_on_while_the_index_files_are_saved_and_see_the_new_generation(store):
    store.upsert([item(make_article("a", BODY_A))], origin="seed")
    with held(store.index, "save") as (entered, release):  # published; the FAISS file is being written
        writer = write_b(store)
        assert entered.wait(STUCK_S)
        seen = in_thread(lambda: articles_found(store))
        assert "b" in seen["dense"] and "b" in seen["lexical"]
        release.set()
        writer.join(STUCK_S)
    assert not writer.is_alive()


def test_a_question_reads_the_generation_its_first_search_read_to_the_end(store):
    """The searches of one question batch share a scope: a write published between them is not half seen."""
    store.upsert([item(make_article("a", BODY_A))], origin="seed")
    scope = store.scope(None)
    _, dense = store.search(ENC.encode_queries([QUESTION_B]), 10, scope=scope)  # the question's first search
    store.upsert([item(make_article("b", BODY_B))], origin="api")  # published before its lexical search
    lexical = store.search_lexical(Query.parse(QUESTION_B), 10, scope=scope).keys.tolist()
    _, dense_again = store.search(ENC.encode_queries([QUESTION_B]), 10, scope=scope)
    pinned = store.passages_by_key([*lexical, *(int(k) for k in dense_again[0] if k >= 0)])
    assert {p.article.id for p in pinned.values()} == {"a"}
    assert lexical and (dense_again[0] >= 0).sum() == (dense[0] >= 0).sum()
    later = store.scope(None)  # the next question reads the new generation
    lexical = store.search_lexical(Query.parse(QUESTION_B), 10, scope=later).keys.tolist()
    _, dense = store.search(ENC.encode_queries([QUESTION_B]), 10, scope=later)
    found = store.passages_by_key([*lexical, *(int(k) for k in dense[0] if k >= 0)])
    assert {p.article.id for p in found.values()} == {"a", "b"}
    assert store.passages_by_key(lexical[:1])[lexical[0]].article.id == "b"


def test_a_second_writer_waits_for_the_first_to_finish(store):
    """Writers take turns: the second write starts after the first has saved (its generation follows)."""
    with held(store.index, "save") as (entered, release):
        first = write_b(store)
        assert entered.wait(STUCK_S)
        second = threading.Thread(target=lambda: store.delete(["b"]))
        second.start()
        assert rows(store, "SELECT COUNT(*) FROM articles") == [(1,)]  # the delete has not started
        release.set()
        first.join(STUCK_S)
        second.join(STUCK_S)
    assert not first.is_alive() and not second.is_alive()
    assert store.manifest().articles == 0 and store.manifest().generation == 2


def recount(store: Store) -> tuple[int, int]:
    ((articles,),) = rows(store, "SELECT COUNT(*) FROM articles")
    ((passages,),) = rows(store, "SELECT COUNT(*) FROM passages")
    return articles, passages


@pytest.mark.every_database
def test_the_counts_in_meta_equal_a_recount_after_writes_and_deletes(store, tmp_path, database_url):
    store.upsert([item(make_article("a", BODY_A)), item(make_article("b", BODY_B))], origin="seed")
    assert (store.manifest().articles, store.manifest().passages) == recount(store)
    store.upsert([item(make_article("a", "Một câu ngắn."))], origin="api")  # a replaced, fewer passages
    store.upsert([item(make_article("c", BODY_A))], origin="api")
    assert (store.manifest().articles, store.manifest().passages) == recount(store)
    assert recount(store)[0] == 3
    assert store.delete(["b", "missing"]) == 1
    assert store.delete(["missing"]) == 0
    assert (store.manifest().articles, store.manifest().passages) == recount(store)
    store.close()
    with store.engine.begin() as conn:  # an index made before the meta rows kept the counts
        conn.execute(sa.delete(db.meta).where(db.meta.c.key.in_(["articles", "passages"])))
    reopened = Store.open(tmp_path / "idx", database_url=database_url)
    assert (reopened.manifest().articles, reopened.manifest().passages) == recount(reopened)
    assert recount(reopened)[0] == 2
    reopened.close()


def test_a_write_past_the_size_for_another_kind_leaves_that_kind_and_the_next_open_rebuilds_nothing(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr("qa.vectors.faiss.FLAT_MAX", 8)  # HNSW from 8 vectors on
    store = Store.create(tmp_path / "idx", model=ENC.name, dim=ENC.dim, chunking=SMALL_CHUNKING)
    store.upsert([item(make_article("a", "Câu một."))], origin="seed")
    assert store.index.kind == "flat"
    store.upsert([item(make_article("b", BODY_A)), item(make_article("c", BODY_B))], origin="seed")
    assert store.manifest().passages >= 8
    assert store.index.kind == "hnsw" and store.manifest().index_kind == "hnsw"
    _, keys = store.search(ENC.encode_queries([QUESTION_B]), 1)
    assert store.passages_by_key([int(keys[0][0])])[int(keys[0][0])].article.id == "c"
    store.close()
    saved = (tmp_path / "idx" / FAISS_FILE).stat()
    caplog.clear()  # the write logged its rebuild
    with caplog.at_level("INFO"):
        reopened = Store.open(tmp_path / "idx")
    assert "rebuilding" not in caplog.text
    assert reopened.index.kind == "hnsw" and len(reopened.index) == reopened.manifest().passages
    assert (tmp_path / "idx" / FAISS_FILE).stat().st_mtime_ns == saved.st_mtime_ns
    reopened.close()


def test_qa_index_leaves_the_kind_the_server_wants(tmp_path, monkeypatch, caplog):
    """A bulk build (`open_index`, as `qa index` runs it) past the size that calls for HNSW: opening it again, as
    `qa serve` does, rebuilds nothing."""
    import shutil

    from qa.config import Settings
    from qa.indexing import open_index
    from tests.test_indexing import SEEDS

    monkeypatch.setattr("qa.vectors.faiss.FLAT_MAX", 8)
    seeds = tmp_path / "seeds"
    shutil.copytree(SEEDS, seeds)
    settings = Settings(data_dir=tmp_path / "data", seeds=seeds)

    def rebuilt_at_open() -> list[str]:  # (the write that crosses the size rebuilds the index: that is the point)
        messages = [r.getMessage() for r in caplog.records]
        return [m for m in messages if "rebuilding" in m and ("missing or unusable" in m or "saved at" in m)]

    with caplog.at_level("INFO"):
        built = open_index(settings, ENC)  # builds aside, swaps it in, opens it, writes the seeds
        assert built.manifest().passages >= 8 and built.index.kind == "hnsw"
        assert rebuilt_at_open() == []
        built.close()
        saved = (settings.index_dir / FAISS_FILE).stat()
        served = open_index(settings, ENC)
    assert rebuilt_at_open() == []
    assert served.index.kind == "hnsw" and (settings.index_dir / FAISS_FILE).stat().st_mtime_ns == saved.st_mtime_ns
    served.close()
