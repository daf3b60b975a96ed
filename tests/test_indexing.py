from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from qa.chunking import CHUNKING
from qa.config import Settings
from qa.indexing import StoreError, open_index
from qa.query import Query
from qa.store import DB_FILE
from tests.fakes import HashingEncoder
from tests.test_store import rows

SEEDS = Path(__file__).resolve().parents[1] / "seeds"


@pytest.fixture
def settings(tmp_path) -> Settings:
    seeds = tmp_path / "seeds"
    shutil.copytree(SEEDS, seeds)
    return Settings(data_dir=tmp_path / "data", seeds=seeds)


def passage_ids(store) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for article in store.articles():
        out[article.id] = []
    for article_id, pid in rows(store, "SELECT article_id, id FROM passages ORDER BY article_id, ordinal"):
        out[article_id].append(pid)
    return out


def test_builds_from_seeds_then_reuses(settings):
    encoder = HashingEncoder()
    store = open_index(settings, encoder)
    manifest = store.manifest()
    assert manifest.articles == 5 and manifest.passages >= 5
    assert manifest.model == encoder.name and manifest.dim == encoder.dim
    assert manifest.seeds_fingerprint
    ids = passage_ids(store)
    store.close()

    calls = encoder.calls
    again = open_index(settings, encoder)
    assert encoder.calls == calls, "an unchanged index must not be re-encoded"
    assert passage_ids(again) == ids, "passage ids are stable across re-opening"
    again.close()


def test_changed_seed_is_reindexed_alone(settings):
    encoder = HashingEncoder()
    store = open_index(settings, encoder)
    before = passage_ids(store)
    store.close()

    changed = settings.seeds / "002_793d685470df229a.txt"
    changed.write_text(changed.read_text(encoding="utf-8") + "\nMột câu mới về quận Nam Từ Liêm.", encoding="utf-8")
    (settings.seeds / "000_bfda8b1290abb0d5.txt").unlink()

    store = open_index(settings, encoder)
    after = passage_ids(store)
    assert "000_bfda8b1290abb0d5" not in after
    assert after["001_664a696c625e304a"] == before["001_664a696c625e304a"]
    assert "Một câu mới" in store.article("002_793d685470df229a").body
    store.close()


def test_other_model_triggers_rebuild_keeping_api_articles(settings):
    from qa.domain import Article
    from qa.indexing import API, Indexer

    store = open_index(settings, HashingEncoder(dim=64))
    extra = Article(
        id="api-1",
        title="Bài thêm",
        body="Hà Nội có mưa lớn vào chiều nay.",
        published_at=None,
        source=None,
        author=None,
        fingerprint="x",
    )
    Indexer(store, HashingEncoder(dim=64), chunking=CHUNKING).add([extra], origin=API)
    store.close()

    other = HashingEncoder(dim=32, name="another-model")
    rebuilt = open_index(settings, other)
    manifest = rebuilt.manifest()
    assert manifest.model == "another-model" and manifest.dim == 32
    assert rebuilt.article("api-1") is not None, "articles added through the API survive a model change"
    assert manifest.articles == 6
    assert not list(settings.data_dir.glob(".default.*")), "no leftovers of the rebuild"
    rebuilt.close()


def test_interrupted_swap_is_recovered(settings):
    encoder = HashingEncoder()
    open_index(settings, encoder).close()
    # A crash between the two renames of a rebuild leaves only the old folder, set aside.
    settings.index_dir.rename(settings.data_dir / ".default.old-12345")
    store = open_index(settings, encoder)
    assert store.manifest().articles == 5
    store.close()


def test_an_index_without_sentence_vectors_is_served_with_a_warning(tmp_path, caplog):
    seeds = tmp_path / "seeds"
    shutil.copytree(SEEDS, seeds)
    off = Settings(data_dir=tmp_path / "data", seeds=seeds, sentence_vectors=False)
    store = open_index(off, HashingEncoder())
    assert not store.has_sentence_vectors()
    store.close()
    on = Settings(data_dir=tmp_path / "data", seeds=seeds)
    with caplog.at_level("WARNING", logger="qa.indexing"):
        store = open_index(on, HashingEncoder())
    assert store.manifest().passages > 0 and not store.has_sentence_vectors(), "no silent re-embedding"
    assert "qa index --rebuild" in caplog.text
    store.close()
    caplog.clear()
    with caplog.at_level("WARNING", logger="qa.indexing"):
        store = open_index(on, HashingEncoder(), force_rebuild=True)
    assert store.has_sentence_vectors() and "sentence vectors" not in caplog.text
    store.close()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_an_index_in_a_database_server_serves_a_second_folder(settings, database_url, tmp_path):
    """With QA_DATABASE_URL the rows live in the server: a second folder (another replica) opens the same index,
    rebuilding its derived indexes from the database, and encodes nothing."""
    encoder = HashingEncoder()
    first = settings.model_copy(update={"database_url": database_url})
    store = open_index(first, encoder)
    ids = passage_ids(store)
    top = store.search_lexical(Query.parse("Nam Từ Liêm có bao nhiêu đảng viên"), 1).keys.tolist()
    store.close()
    assert len(ids) == 5
    assert not (first.index_dir / DB_FILE).exists(), "no SQLite file beside a database server"

    calls = encoder.calls
    second = first.model_copy(update={"data_dir": tmp_path / "replica"})
    store = open_index(second, encoder)
    assert encoder.calls == calls, "the second folder reads the vectors from the database"
    assert passage_ids(store) == ids
    assert store.search_lexical(Query.parse("Nam Từ Liêm có bao nhiêu đảng viên"), 1).keys.tolist() == top
    store.close()

    with pytest.raises(StoreError, match="rebuild"):
        open_index(second, encoder, force_rebuild=True)


def test_an_index_built_before_titles_had_vectors_gains_them_at_the_next_open(settings):
    encoder = HashingEncoder()
    store = open_index(settings, encoder)
    titles = {a.id: a.title for a in store.articles()}
    with store.engine.begin() as conn:  # as an older version left it: sentence vectors, no title vectors
        conn.execute(sa.text("DELETE FROM title_vectors"))
    generation = store.manifest().generation
    assert not store.has_sentence_vectors() and len(store.titles_without_vectors()) == len(titles)
    store.close()

    calls = encoder.calls
    again = open_index(settings, encoder)
    assert again.has_sentence_vectors() and again.titles_without_vectors() == []
    assert encoder.calls == calls + 1, "the titles alone, in one batch: nothing else re-encoded"
    stored = again.title_vectors(list(titles))
    assert sorted(stored) == sorted(titles)
    for article_id, title in titles.items():
        assert abs(stored[article_id] - encoder.encode_passages([title])[0]).max() < 1e-2  # stored as float16
    assert again.manifest().generation == generation, "derived indexes do not read title vectors"
    again.close()


def test_title_vectors_for_a_removed_article_are_skipped(settings):
    store = open_index(settings, HashingEncoder())
    vector = HashingEncoder().encode_passages(["x"])[0]
    store.add_title_vectors({"no-such-article": vector})
    assert store.title_vectors(["no-such-article"]) == {}
    with pytest.raises(ValueError, match="dimensions"):
        store.add_title_vectors({"x": vector[:-1]})
    store.close()
