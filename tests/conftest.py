"""Session fixtures shared by the test suite: the real default model, materialised once into the repo."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

REPO_ROOT = Path(__file__).resolve().parents[1]


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
