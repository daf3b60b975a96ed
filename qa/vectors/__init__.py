"""Vector backends behind one interface: `VectorIndex` (add, remove, filtered top-k, save/load) and a factory.

A backend is one module here (`faiss.py`, `milvus.py`) registered in `BACKENDS`; the store only ever talks
to `VectorIndex`, and opens one through its class's `at` (`qa.derived.Engine`). Keys are the store's int64 passage
keys; vectors are L2-normalised float32, scored by inner product (cosine). Empty result slots hold key -1 and score
-inf.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from qa.derived import DerivedIndex, PassageRow, engine_class
from qa.files import atomic_write

if TYPE_CHECKING:
    from qa.schemas import Filters

log = logging.getLogger(__name__)

META_FILE = "vectors.json"

# backend name → "module:Class"; the class is a `qa.derived.Engine` (`vector_engine`).
BACKENDS = {
    "faiss": "qa.vectors.faiss:FaissIndex",
    "milvus": "qa.vectors.milvus:MilvusIndex",
}


@dataclass(frozen=True, slots=True)
class VectorConfig:
    """Which vector backend, and its options. The default is FAISS in the index folder, its kind picked from the
    corpus size; the service's comes from its settings (`Settings.vectors`), never from the environment here."""

    backend: str = "faiss"
    faiss_index: str = "auto"  # auto, flat, hnsw or ivf (qa.vectors.faiss.choose_kind)
    faiss_mmap: bool = False
    milvus_uri: str | None = None  # a Milvus server, or a milvus-lite .db file; None: a file in the index folder
    milvus_collection: str = "viqa_passages"


class VectorIndexError(RuntimeError):
    """A vector index cannot be created, loaded or used; the message says why."""


class Neighbours(NamedTuple):
    """Top-k per query row, best first: `scores` float32 and `keys` int64, both (n_queries, k)."""

    scores: np.ndarray
    keys: np.ndarray


class VectorIndex(DerivedIndex, Protocol):
    """A derived index (`qa.derived`) of passage vectors, saved in `directory` (`save` writes there atomically; a
    backend with its own storage records there where it lives)."""

    backend: str
    kind: str
    dim: int
    directory: Path

    def __len__(self) -> int: ...

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, keys: np.ndarray) -> None: ...

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, *, filters: Filters | None = None
    ) -> Neighbours:
        """Top-k per query row among `allowed` keys (a local index), or among the rows passing `filters` (a shared
        one, which filters by itself); neither: all."""
        ...

    def describe(self) -> dict[str, Any]:
        """Kind and parameters, for the manifest and the logs."""
        ...


class SavedInFolder:
    """The part of the derived-index lifecycle both backends share: the generation stamp lives in the folder's
    metadata file (written last by `save`), and a write is a remove then an add."""

    directory: Path
    shared = False
    # Writes applied with `publish=False`, in order, until `publish`.
    _staged: list[tuple[Sequence[int], Sequence[PassageRow]]]

    def remove(self, keys: np.ndarray) -> None:
        raise NotImplementedError

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        raise NotImplementedError

    def saved_generation(self) -> int | None:
        generation = read_meta(self.directory).get("generation")
        return generation if isinstance(generation, int) else None

    def apply(self, removed: Sequence[int], added: Sequence[PassageRow], *, publish: bool = True) -> None:
        self._staged.append((removed, added))
        if publish:
            self.publish()

    def publish(self) -> None:
        staged, self._staged = self._staged, []
        for removed, added in staged:
            if len(removed):
                self.remove(np.asarray(removed, dtype=np.int64))
            if added:
                self.add(np.asarray([r.key for r in added], dtype=np.int64), np.vstack([r.vector for r in added]))


def vector_engine(name: str) -> Any:
    """The class of the vector backend `name` (a `qa.derived.Engine`)."""
    engine = engine_class(BACKENDS, name)
    if engine is None:
        raise VectorIndexError(f"unknown vector backend {name!r}; known: {', '.join(BACKENDS)}")
    return engine


def make_vector_index(config: VectorConfig, dim: int, expected_size: int, *, directory: Path) -> VectorIndex:
    """A new, empty local index of the configured backend, sized for about `expected_size` vectors, saved in
    `directory` (a shared backend is attached by the store instead: `MilvusIndex.attach`)."""
    backend = vector_engine(config.backend)
    index: VectorIndex = backend.create(config, dim, expected_size, directory=directory)
    log.info("new %s vector index: %s", index.backend, index.describe())
    return index


def load_vector_index(config: VectorConfig, directory: Path) -> VectorIndex:
    """The index saved in `directory` by `VectorIndex.save`; raises VectorIndexError if missing or damaged."""
    meta = read_meta(directory)
    backend = meta.get("backend")
    if backend is None:
        raise VectorIndexError(f"no vector index metadata in {directory}")
    if backend != config.backend:
        raise VectorIndexError(f"{directory} holds a {backend} index, settings ask for {config.backend}")
    return vector_engine(backend).load(config, directory)  # type: ignore[no-any-return]


def read_meta(directory: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((Path(directory) / META_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def empty_neighbours(n: int, k: int) -> Neighbours:
    return Neighbours(np.full((n, k), -np.inf, dtype=np.float32), np.full((n, k), -1, dtype=np.int64))


def exact_search(vectors: np.ndarray, keys: np.ndarray, queries: np.ndarray, k: int) -> Neighbours:
    """Brute-force top-k of `queries` over (`keys`, `vectors`): the reference, and the small-filter path."""
    out = empty_neighbours(len(queries), k)
    if len(keys) == 0 or k <= 0:
        return out
    scores = queries @ vectors.T
    take = min(k, len(keys))
    top = np.argpartition(-scores, take - 1, axis=1)[:, :take]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    out.scores[:, :take] = np.take_along_axis(top_scores, order, axis=1)
    out.keys[:, :take] = keys[np.take_along_axis(top, order, axis=1)]
    return out


def write_meta(directory: Path, meta: dict[str, Any]) -> None:
    text = json.dumps(meta, indent=2, sort_keys=True)

    def write(tmp: str) -> None:
        Path(tmp).write_text(text, encoding="utf-8")

    atomic_write(Path(directory) / META_FILE, write)
