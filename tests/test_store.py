from __future__ import annotations

import hashlib
import json
from datetime import datetime

import numpy as np
import pytest
import sqlalchemy as sa

from qa.chunking import chunk_text
from qa.domain import Article
from qa.query import Query
from qa.store import DB_FILE, FAISS_FILE, LEXICAL_DIR, MANIFEST_FILE, Store, StoreError
from tests.fakes import SMALL_CHUNKING, HashingEncoder

pytestmark = pytest.mark.every_database

ENC = HashingEncoder()
CHUNKING = SMALL_CHUNKING


def make_article(article_id: str, body: str, **kw) -> Article:
    return Article(
        id=article_id,
        title=kw.pop("title", f"Bài {article_id}"),
        body=body,
        published_at=kw.pop("published_at", datetime(2021, 1, 15, 11, 53)),
        source=kw.pop("source", "LĐTĐ"),
        author=kw.pop("author", "X.Sinh"),
        fingerprint=kw.pop("fingerprint", f"fp-{article_id}-{hashlib.sha256(body.encode()).hexdigest()[:16]}"),
        **kw,
    )


def item(article: Article):
    passages = chunk_text(article.id, article.body, **CHUNKING)
    return article, passages, ENC.encode_passages([p.text for p in passages])


def rows(store: Store, sql: str) -> list[tuple]:
    """The rows of a query against the store's database, as plain tuples."""
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql))]


BODY_A = "Quận Đống Đa thu ngân sách 11.085,046 tỷ đồng. Đạt 100,52% dự toán giao. " * 3
BODY_B = "Đảng bộ quận Nam Từ Liêm có 10.254 đảng viên. Quận có 38 tổ chức cơ sở Đảng. " * 3


def test_round_trip_survives_reopen(store, tmp_path, database_url):
    store.upsert([item(make_article("a", BODY_A)), item(make_article("b", BODY_B))], origin="seed")
    manifest = store.manifest()
    store.close()

    reopened = Store.open(tmp_path / "idx", database_url=database_url)
    assert reopened.manifest().passages == manifest.passages > 0
    assert reopened.manifest().articles == 2
    assert reopened.article("a") == make_article("a", BODY_A)
    scores, keys = reopened.search(ENC.encode_queries(["bao nhiêu đảng viên"]), 3)
    top = reopened.passages_by_key([int(keys[0][0])])[int(keys[0][0])]
    assert top.article.id == "b"
    assert top.article.body[top.passage.start : top.passage.end] == top.passage.text
    on_disk = json.loads((tmp_path / "idx" / MANIFEST_FILE).read_text())
    assert on_disk["passages"] == manifest.passages and on_disk["model"] == ENC.name
    reopened.close()


def test_upsert_replaces_and_delete_removes(store):
    store.upsert([item(make_article("a", BODY_A))], origin="api")
    first = store.manifest()
    store.upsert([item(make_article("a", BODY_B))], origin="api")
    after = store.manifest()
    assert after.articles == 1 and after.generation == first.generation + 1
    _, keys = store.search(ENC.encode_queries(["ngân sách"]), 10)
    texts = [r.passage.text for r in store.passages_by_key([int(k) for k in keys[0]]).values()]
    assert texts and all("ngân sách" not in t for t in texts)
    assert store.delete(["a", "missing"]) == 1
    assert store.manifest().passages == 0
    assert store.search(ENC.encode_queries(["ngân sách"]), 10)[1].size == 0


def test_rejects_vectors_of_wrong_shape(store):
    article, passages, vectors = item(make_article("a", BODY_A))
    with pytest.raises(ValueError, match="vectors of shape"):
        store.upsert([(article, passages, vectors[:, :10])], origin="api")
    assert store.manifest().articles == 0


def test_stale_faiss_file_is_rebuilt_from_database(store, tmp_path, database_url):
    store.upsert([item(make_article("a", BODY_A))], origin="seed")
    stale = (tmp_path / "idx" / FAISS_FILE).read_bytes()
    store.upsert([item(make_article("b", BODY_B))], origin="seed")
    store.close()
    # As if the process died after the database commit but before the FAISS file was replaced.
    (tmp_path / "idx" / FAISS_FILE).write_bytes(stale)
    reopened = Store.open(tmp_path / "idx", database_url=database_url)
    _, keys = reopened.search(ENC.encode_queries(["đảng viên Nam Từ Liêm"]), 1)
    assert reopened.passages_by_key([int(keys[0][0])])[int(keys[0][0])].article.id == "b"
    reopened.close()


def test_truncated_faiss_file_is_rebuilt(store, tmp_path, database_url):
    store.upsert([item(make_article("a", BODY_A))], origin="seed")
    store.close()
    (tmp_path / "idx" / FAISS_FILE).write_bytes(b"garbage")
    reopened = Store.open(tmp_path / "idx", database_url=database_url)
    assert reopened.search(ENC.encode_queries(["ngân sách"]), 1)[1].size == 1
    reopened.close()


def test_missing_and_corrupt_index_raise_store_error(tmp_path):
    with pytest.raises(StoreError, match="qa index"):
        Store.open(tmp_path / "nothing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / DB_FILE).write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="corrupt"):
        Store.open(tmp_path / "bad")


def test_a_database_server_that_does_not_answer_is_not_called_corrupt(tmp_path):
    from tests.servers import free_port

    url = f"postgresql+psycopg://viqa@127.0.0.1:{free_port()}/postgres"  # nothing listens there
    with pytest.raises(StoreError, match="cannot reach its database") as caught:
        Store.open(tmp_path / "idx", database_url=url)
    assert "\n" not in str(caught.value) and "corrupt" not in str(caught.value)


def test_other_format_version_is_refused(store, tmp_path, database_url):
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE meta SET value = '999' WHERE key = 'format_version'"))
    store.close()
    with pytest.raises(StoreError, match="format 999"):
        Store.open(tmp_path / "idx", database_url=database_url)


def test_an_index_from_before_a_table_existed_opens_with_it(store, tmp_path, database_url):
    """An index built before title vectors were stored has no such table: opening it adds the table."""
    store.upsert([item(make_article("a", BODY_A))], origin="seed")
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE title_vectors"))
    store.close()
    reopened = Store.open(tmp_path / "idx", database_url=database_url)
    assert not reopened.has_sentence_vectors() and reopened.title_vectors(["a"]) == {}
    assert reopened.manifest().articles == 1
    reopened.close()


def test_create_refuses_non_empty_folder(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(StoreError, match="not empty"):
        Store.create(tmp_path / "full", model="m", dim=4, chunking=CHUNKING)


def test_search_returns_normalised_cosine_scores(store):
    store.upsert([item(make_article("a", BODY_A))], origin="seed")
    scores, _ = store.search(ENC.encode_queries([BODY_A.split(". ")[0]]), 1)
    assert 0.0 < scores[0][0] <= 1.0 + 1e-5
    assert np.isfinite(scores).all()


def test_dense_scores_match_the_stored_vectors_whichever_copy_answers(store):
    """Scores come from the vector index's copy; SQLite answers for keys the index lacks: same numbers."""
    store.upsert([item(make_article("a", BODY_A)), item(make_article("b", BODY_B))], origin="seed")
    query = ENC.encode_queries(["bao nhiêu đảng viên"])[0]
    stored = rows(store, "SELECT key, vector FROM passages ORDER BY key")
    keys = [key for key, _ in stored]
    expected = np.array([np.frombuffer(blob, dtype=np.float32) @ query for _, blob in stored], dtype=np.float32)
    assert np.allclose(store.dense_scores(query, keys), expected, atol=1e-6)
    store.index.remove(np.asarray(keys[:2], dtype=np.int64))  # the index lost two: SQLite fills them in
    assert np.allclose(store.dense_scores(query, keys), expected, atol=1e-6)
    store.delete(["a"])  # gone from both (keys[0] is a's first passage): NaN
    assert np.isnan(store.dense_scores(query, [keys[0], 10**9])).all()


def _lexical_top(store, question: str) -> list[int]:
    return store.search_lexical(Query.parse(question), 10).keys.tolist()


def test_a_current_lexical_index_is_opened_as_it_is_and_equals_a_rebuild(tmp_path, caplog, database_url):
    store = Store.create(tmp_path / "idx", model=ENC.name, dim=ENC.dim, chunking=CHUNKING, database_url=database_url)
    store.upsert([item(make_article("a", BODY_A)), item(make_article("b", BODY_B))], origin="seed")
    expected = _lexical_top(store, "bao nhiêu đảng viên")
    store.close()
    with caplog.at_level("INFO", logger="qa.store"):
        reopened = Store.open(tmp_path / "idx", database_url=database_url)
    assert "rebuilding" not in caplog.text
    assert _lexical_top(reopened, "bao nhiêu đảng viên") == expected
    rebuilt = store_rebuilt(tmp_path, database_url)
    for question in ("bao nhiêu đảng viên", "bao nhieu dang vien"):
        assert _lexical_top(reopened, question) == _lexical_top(rebuilt, question)
    reopened.close()
    rebuilt.close()


def store_rebuilt(tmp_path, database_url):
    """The same database with its lexical index rebuilt from the passages (in a copy of the index folder)."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "idx", copy)
    shutil.rmtree(copy / LEXICAL_DIR)
    return Store.open(copy, database_url=database_url)


def test_a_write_the_lexical_index_missed_is_rebuilt_at_the_next_open(tmp_path, monkeypatch, caplog, database_url):
    store = Store.create(tmp_path / "idx", model=ENC.name, dim=ENC.dim, chunking=CHUNKING, database_url=database_url)
    store.upsert([item(make_article("a", BODY_A))], origin="seed")

    def dies(*args, **kwargs):  # the process dies after the database committed, before the engine did
        raise SystemExit

    monkeypatch.setattr(store.lexical, "apply", dies)
    with pytest.raises(SystemExit):
        store.upsert([item(make_article("b", BODY_B))], origin="api")
    store.engine.dispose()
    with caplog.at_level("INFO", logger="qa.store"):
        reopened = Store.open(tmp_path / "idx", database_url=database_url)
    assert "rebuilding" in caplog.text
    top = reopened.passages_by_key(_lexical_top(reopened, "đảng viên Nam Từ Liêm")[:1])
    assert next(iter(top.values())).article.id == "b"
    reopened.close()


@pytest.mark.parametrize("damage", ["delete", "garbage"])
def test_a_damaged_lexical_index_means_a_rebuild_not_an_error(tmp_path, caplog, damage, database_url):
    store = Store.create(tmp_path / "idx", model=ENC.name, dim=ENC.dim, chunking=CHUNKING, database_url=database_url)
    store.upsert([item(make_article("b", BODY_B))], origin="seed")
    store.close()
    folder = tmp_path / "idx" / LEXICAL_DIR
    for file in folder.iterdir():
        if file.name != "viqa-stamp.json":
            file.unlink() if damage == "delete" else file.write_bytes(b"\x00garbage")
    with caplog.at_level("INFO", logger="qa.store"):
        reopened = Store.open(tmp_path / "idx", database_url=database_url)
    assert "rebuilding" in caplog.text
    assert _lexical_top(reopened, "đảng viên")
    reopened.close()


def test_fingerprints_of_given_ids_are_those_stored(store):
    store.upsert([item(make_article("a", BODY_A)), item(make_article("b", BODY_B))], origin="seed")
    store.upsert([item(make_article("c", BODY_A))], origin="api")
    ids = ["c", "missing", "a", *(f"x{i}" for i in range(1200))]  # more than one statement's worth of ids
    assert store.fingerprints(ids=ids) == {
        "a": make_article("a", BODY_A).fingerprint,
        "c": make_article("c", BODY_A).fingerprint,
    }
    assert store.fingerprints("api", ids=["a", "c"]) == {"c": make_article("c", BODY_A).fingerprint}
    assert store.fingerprints(ids=[]) == {}
    known = store.fingerprints()
    assert not make_article("a", BODY_A).differs_from(known)
    assert make_article("a", BODY_B).differs_from(known) and make_article("new", BODY_A).differs_from(known)
