"""Milvus behind `VectorIndex`, through pymilvus: a Milvus cluster (`http://host:19530`) or milvus-lite (a local
`.db` file, embedded, same client API) — `QA_VECTOR_BACKEND=milvus`, `QA_MILVUS_URI`.

One collection: `key` (INT64 primary key: the store's passage key) and `vector` (FLOAT_VECTOR, inner product).
Milvus persists by itself; `save` only flushes and records where the collection lives. A filter (`allowed`)
becomes a `key in [...]` expression. Reads are strongly consistent, so a search sees the writes before it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.vectors import (
    Neighbours,
    SavedInFolder,
    VectorConfig,
    VectorIndexError,
    empty_neighbours,
    read_meta,
    write_meta,
)

if TYPE_CHECKING:
    from pymilvus import MilvusClient

log = logging.getLogger(__name__)

DEFAULT_LITE_FILE = "milvus.db"
_INSERT_BATCH = 5_000  # rows per insert call: keeps gRPC messages well under their size limit


def _client(uri: str) -> MilvusClient:
    try:
        from pymilvus import MilvusClient
    except ImportError as exc:
        raise VectorIndexError(
            "QA_VECTOR_BACKEND=milvus needs pymilvus (and milvus-lite for a local .db): "
            "pip install pymilvus milvus-lite"
        ) from exc
    return MilvusClient(uri)


class MilvusIndex(SavedInFolder):
    """A Milvus collection of (key, vector) rows; thread-safe."""

    backend = "milvus"
    kind = "milvus"

    def __init__(
        self, uri: str, collection: str, dim: int, *, directory: Path, client: MilvusClient | None = None
    ) -> None:
        self.directory = Path(directory)
        self.uri = uri
        self.collection = collection
        self.dim = dim
        self._client = client or _client(uri)
        self._lock = threading.Lock()

    @classmethod
    def create(cls, config: VectorConfig, dim: int, expected_size: int = 0, *, directory: Path) -> MilvusIndex:
        """A fresh, empty collection (an existing one of the same name is dropped: this index is derived)."""
        from pymilvus import DataType

        uri = resolve_uri(config, directory)
        self = cls(uri, config.milvus_collection, dim, directory=directory)
        client = self._client
        if client.has_collection(self.collection):
            client.drop_collection(self.collection)
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("key", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index_params = client.prepare_index_params()
        # FLAT is exact (what a local test compares against); a cluster would use HNSW or IVF here.
        index_params.add_index(field_name="vector", index_type="FLAT" if expected_size < 1_000_000 else "HNSW",
                               metric_type="IP")  # fmt: skip
        client.create_collection(self.collection, schema=schema, index_params=index_params, consistency_level="Strong")
        log.info("Milvus collection %s created at %s (%d dims)", self.collection, uri, dim)
        return self

    @classmethod
    def load(cls, config: VectorConfig, directory: Path) -> MilvusIndex:
        meta = read_meta(directory)
        uri, collection = meta.get("uri"), meta.get("collection")
        if not uri or not collection:
            raise VectorIndexError(f"no Milvus collection recorded in {directory}")
        self = cls(str(uri), str(collection), int(meta["dim"]), directory=directory)
        if not self._client.has_collection(self.collection):
            raise VectorIndexError(f"Milvus collection {collection} at {uri} is gone")
        self._client.load_collection(self.collection)
        if len(self) != meta.get("count"):
            raise VectorIndexError(
                f"Milvus collection {collection} holds {len(self)} vectors, expected {meta['count']}"
            )
        return self

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "kind": self.kind, "uri": self.uri, "collection": self.collection}

    def __len__(self) -> int:
        with self._lock:
            rows = self._client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.int64).ravel()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(keys), self.dim)
        with self._lock:
            for start in range(0, len(keys), _INSERT_BATCH):
                rows = [
                    {"key": int(k), "vector": v.tolist()}
                    for k, v in zip(
                        keys[start : start + _INSERT_BATCH], vectors[start : start + _INSERT_BATCH], strict=True
                    )
                ]
                self._client.insert(self.collection, rows)

    def remove(self, keys: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.int64).ravel()
        if len(keys) == 0:
            return
        with self._lock:
            for start in range(0, len(keys), _INSERT_BATCH):
                self._client.delete(self.collection, ids=[int(k) for k in keys[start : start + _INSERT_BATCH]])

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> Neighbours:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        out = empty_neighbours(len(queries), max(k, 0))
        if k <= 0 or len(queries) == 0 or (allowed is not None and len(allowed) == 0):
            return out
        expression = "" if allowed is None else f"key in [{','.join(str(int(a)) for a in np.unique(allowed))}]"
        with self._lock:
            hits = self._client.search(
                self.collection,
                data=queries.tolist(),
                filter=expression,
                limit=min(k, 16_384),
                output_fields=[],
                search_params={"metric_type": "IP"},
            )
        for row, found in enumerate(hits):
            for col, hit in enumerate(found[:k]):
                out.keys[row, col] = int(hit["key"])  # the primary key field, by name
                out.scores[row, col] = float(hit["distance"])
        return out

    def save(self, generation: int) -> None:
        with self._lock:
            self._client.flush(self.collection)
        write_meta(self.directory, {**self.describe(), "dim": self.dim, "count": len(self), "generation": generation})

    def close(self) -> None:
        with self._lock:
            self._client.close()


def resolve_uri(config: VectorConfig, directory: Path | None) -> str:
    """`QA_MILVUS_URI`, else a milvus-lite file inside the index folder."""
    if config.milvus_uri:
        return config.milvus_uri
    if directory is None:
        raise VectorIndexError("set QA_MILVUS_URI (a Milvus server URI or a local .db file for milvus-lite)")
    return str(Path(directory) / DEFAULT_LITE_FILE)
