"""Fixtures shared by the test suite: the real default model, materialised once into the repo, and a small store
over the hashing test encoder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path):
    """An empty store for `tests.fakes.HashingEncoder()` vectors, chunked with `SMALL_CHUNKING`."""
    from qa.store import Store
    from tests.fakes import SMALL_CHUNKING, HashingEncoder

    encoder = HashingEncoder()
    s = Store.create(tmp_path / "idx", model=encoder.name, dim=encoder.dim, chunking=SMALL_CHUNKING)
    yield s
    s.close()


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The default model folder under embeddings/models/; built on the first run only (idempotent)."""
    from qa.encoders.materialize import DEFAULT_MODEL_NAME, materialize

    return materialize(REPO_ROOT / "embeddings" / "models" / DEFAULT_MODEL_NAME)


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
