"""Fixtures shared by the test suite: the real default model, materialised once into the repo, and a small store
over the hashing test encoder; and the Hypothesis profiles every property test runs under."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

REPO_ROOT = Path(__file__).resolve().parents[1]

# `make test` and CI: the same examples on every run and every machine, so the suite fails only on a change.
# No example database: replaying failures an earlier local run found would make a clean clone and a developer's
# tree test different examples. A failure `make fuzz` finds becomes an `@example(...)` in the test instead.
DETERMINISTIC_EXAMPLES = 100
settings.register_profile(
    "deterministic",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=DETERMINISTIC_EXAMPLES,
    print_blob=True,
)
# `make fuzz`: fresh random examples each run, fifty times as many, and the local example
# database (.hypothesis/, not committed), so a failure it finds is replayed first until it is fixed.
FUZZ_SCALE = 50
settings.register_profile(
    "fuzz",
    derandomize=False,
    database=DirectoryBasedExampleDatabase(REPO_ROOT / ".hypothesis" / "examples"),
    deadline=None,
    max_examples=FUZZ_SCALE * DETERMINISTIC_EXAMPLES,
    print_blob=True,
)
# `--hypothesis-profile NAME` (hypothesis' pytest option) overrides this, after conftest has loaded. `make fuzz`
# selects the tests by the `hypothesis` mark, which hypothesis' plugin puts on every `@given` test; a test that
# drives Hypothesis from inside (schemathesis, a strategy over a fixture) carries the mark itself.
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


def examples(n: int) -> int:
    """`n` examples in the deterministic run, scaled like the loaded profile's count (`FUZZ_SCALE` times under fuzz).

    A test that wants another count than the profile's uses `@settings(max_examples=examples(n))`: a bare
    `max_examples=n` would stay `n` under `make fuzz` too.
    """
    return max(1, n * settings().max_examples // DETERMINISTIC_EXAMPLES)


DATABASES = ["sqlite", "postgres"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked `every_database` that uses a store runs once per database the store can live in."""
    if "database_url" in metafunc.fixturenames and metafunc.definition.get_closest_marker("every_database"):
        metafunc.parametrize("database_url", DATABASES, indirect=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server for the session (`tests.postgres`); its URL."""
    from tests.postgres import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def milvus_uri() -> Iterator[str]:
    """A throwaway Milvus server (`milvus-lite server`, `tests.milvus`) for the session; its URI
    (http://127.0.0.1:PORT). Tests that stop or restart Milvus start their own with `tests.milvus.milvus_server()`."""
    from tests.milvus import milvus_server

    with milvus_server() as server:
        yield server.uri


@pytest.fixture
def milvus_collections(milvus_uri: str) -> Iterator[str]:
    """A collection-name prefix of the test's own on the session's Milvus; every collection the test made is
    dropped afterwards (`tests.milvus.fresh_collections`)."""
    from tests.milvus import fresh_collections

    with fresh_collections(milvus_uri) as prefix:
        yield prefix


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Where the test's store keeps its rows: None, the SQLite file in its index folder, unless the test is marked
    `every_database`; then also a fresh PostgreSQL database, dropped after the test."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield None
        return
    from tests.postgres import fresh_database

    with fresh_database(request.getfixturevalue("postgres_url")) as url:
        yield url


@pytest.fixture
def store(tmp_path, database_url):
    """An empty store for `tests.fakes.HashingEncoder()` vectors, chunked with `SMALL_CHUNKING`."""
    from qa.store import Store
    from tests.fakes import SMALL_CHUNKING, HashingEncoder

    encoder = HashingEncoder()
    s = Store.create(
        tmp_path / "idx", model=encoder.name, dim=encoder.dim, chunking=SMALL_CHUNKING, database_url=database_url
    )
    yield s
    s.close()


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The default model folder under embeddings/models/; built on the first run only (idempotent)."""
    from qa.config import DEFAULT_MODEL
    from qa.encoders.materialize import materialize

    return materialize(REPO_ROOT / "embeddings" / "models" / DEFAULT_MODEL)


@pytest.fixture(scope="session")
def st_model(default_model_dir: Path) -> SentenceTransformer:
    """The default model loaded once per session (~3 s, ~800 MB)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(default_model_dir), device="cpu")


@pytest.fixture(scope="session")
def encoder(st_model: SentenceTransformer):
    """The default model behind the service's `Encoder` interface."""
    from qa.config import DEFAULT_MODEL
    from qa.encoders import SentenceTransformerEncoder

    return SentenceTransformerEncoder(st_model, DEFAULT_MODEL)


@pytest.fixture(scope="session")
def eval_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder for the session's eval indexes (`qa.eval.build_index` caches them there): the eval sets
    are embedded once per session, whichever slow tests need them. QA_TEST_EVAL_DATA keeps them between runs."""
    kept = os.environ.get("QA_TEST_EVAL_DATA")
    return Path(kept) if kept else tmp_path_factory.mktemp("eval-data")


@pytest.fixture(scope="session")
def service(encoder, default_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The whole service over the shipped seeds, in a private data folder, loaded once per session.

    Tests that write to it must clean up after themselves (or build their own service).
    """
    from qa.config import Settings
    from qa.service import Service

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        models_dir=default_model_dir.parent,
        seeds=REPO_ROOT / "seeds",
    )
    svc = Service.load(settings, encoder=encoder)
    yield svc
    svc.close()
