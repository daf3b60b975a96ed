"""Milvus behind `VectorIndex`, through pymilvus: a Milvus cluster (`http://host:19530`, the milvus-lite server
included) or a milvus-lite `.db` file — `QA_VECTOR_BACKEND=milvus`, `QA_MILVUS_URI`.

One collection per index (`qa.milvus`): `key` (INT64 primary key: the store's passage key), `vector`
(FLOAT_VECTOR, inner product) and the article fields filters read. It is shared by every replica of the index and
kept in step by the store's writes (`DerivedIndex.shared`), never rebuilt from a stamp; reads are strongly
consistent, so a search sees every write that has answered.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa import milvus
from qa.derived import PassageRow
from qa.vectors import Neighbours, VectorConfig, empty_neighbours

if TYPE_CHECKING:
    from qa.derived import Site
    from qa.schemas import Filters

log = logging.getLogger(__name__)

_INSERT_BATCH = 2_000  # rows per upsert: keeps gRPC messages well under their 64 MB limit
_SEARCH_LIMIT = 16_384  # Milvus's largest topk


class MilvusIndex(milvus.Collection):
    """A Milvus collection of passage vectors; thread-safe."""

    backend = "milvus"
    kind = "milvus"

    def __init__(self, uri: str, collection: str, dim: int, *, directory: Path) -> None:
        super().__init__(uri, collection, directory=directory)
        self.dim = dim

    @classmethod
    def attach(cls, config: VectorConfig, dim: int, index_id: str, *, directory: Path, fresh: bool) -> MilvusIndex:
        """The index's collection (`milvus.Collection.open`)."""
        from pymilvus import DataType

        uri = milvus.resolve_uri(config.milvus_uri, directory)
        self = cls(uri, milvus.collection_name(config.milvus_collection, index_id), dim, directory=directory)

        def define(client: Any) -> tuple[Any, Any]:
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("key", DataType.INT64, is_primary=True)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
            milvus.add_article_fields(schema)
            index_params = client.prepare_index_params()
            # FLAT is exact, as FAISS's flat index (what the parity tests compare with); a cluster past a few
            # million vectors would use HNSW here.
            index_params.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
            return schema, index_params

        self.open(fresh, define)
        return self

    @staticmethod
    def collection_at(site: Site) -> str:
        return milvus.collection_name(site.vectors.milvus_collection, site.index_id)

    @classmethod
    def at(cls, site: Site, *, fresh: bool, size: int) -> MilvusIndex:
        return cls.attach(site.vectors, site.dim, site.index_id, directory=site.directory, fresh=fresh)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "kind": self.kind, "uri": self.uri, "collection": self.collection}

    def __len__(self) -> int:
        rows = milvus.call(
            self, "count vectors", lambda: self._client.query(self.collection, filter="", output_fields=["count(*)"])
        )
        return int(rows[0]["count(*)"])

    def apply(self, removed: Sequence[int], added: Sequence[PassageRow], *, publish: bool = True) -> None:
        if len(removed):
            self.remove(np.asarray(removed, dtype=np.int64))
        for start in range(0, len(added), _INSERT_BATCH):
            rows = [
                {**milvus.row_fields(r), "vector": np.asarray(r.vector, dtype=np.float32).tolist()}
                for r in added[start : start + _INSERT_BATCH]
            ]
            milvus.call(self, "store vectors", partial(self._client.upsert, self.collection, rows))

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Vectors without article fields (they pass no filter but `allowed`)."""
        keys = np.asarray(keys, dtype=np.int64).ravel()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(keys), self.dim)
        self.apply([], [PassageRow(int(k), "", v) for k, v in zip(keys, vectors, strict=True)])

    def remove(self, keys: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.int64).ravel()
        for start in range(0, len(keys), _INSERT_BATCH):
            ids = [int(k) for k in keys[start : start + _INSERT_BATCH]]
            milvus.call(self, "delete vectors", partial(self._client.delete, self.collection, ids=ids))

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, *, filters: Filters | None = None
    ) -> Neighbours:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        out = empty_neighbours(len(queries), max(k, 0))
        if k <= 0 or len(queries) == 0 or (allowed is not None and len(allowed) == 0):
            return out
        keys = None if allowed is None else np.unique(allowed).tolist()
        hits = milvus.call(
            self,
            "search vectors",
            lambda: self._client.search(
                self.collection,
                data=queries.tolist(),
                anns_field="vector",
                filter=milvus.filter_expression(filters, keys),
                limit=min(k, _SEARCH_LIMIT),
                output_fields=["key"],  # none: milvus-lite then reads every field of every hit
                search_params={"metric_type": "IP"},
            ),
        )
        for row, found in enumerate(hits):
            for col, hit in enumerate(found[:k]):
                out.keys[row, col] = int(hit["key"])  # the primary key field, by name
                out.scores[row, col] = float(hit["distance"])
        return out
