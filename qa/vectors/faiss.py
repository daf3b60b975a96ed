"""FAISS behind `VectorIndex`: exact flat, HNSW or IVF, the kind and its parameters derived from the corpus size.

- flat: `IndexIDMap2(IndexFlatIP)`, exact; a delete compacts in place.
- hnsw: `IndexIDMap2(IndexHNSWFlat)`. HNSW cannot delete, so a removed key becomes a tombstone excluded from
  every search (an ID selector); the graph is rebuilt without them once they pass 20% of the index, beside the
  searches (for a published write: when it is saved), then swapped in.
- ivf: `IndexIVFScalarQuantizer` with 16-bit floats (half the memory of raw floats, cosines barely moved, and
  faster to scan than IVF-Flat for the same recall, benchmarks/README.md; 8-bit codes lost recall) holding the
  keys itself (an IDMap over IVF mis-maps ids after a delete); trained on the first vectors added, cells ≈ √n,
  probes derived from the cell count. Deletes are native. An IVF-Flat index file loads and works as well.
Searches share a readers-writer lock (`qa.locks`); only adds and removes hold it alone, and `save` only reads, so
searches run beside it (FAISS' CPU indexes allow concurrent searches and other calls that leave them unchanged).
A filter (`allowed`) is an ID selector; a selective one (few keys) is scored exactly instead, since graph
and cell searches under a narrow filter return too few hits. The live keys are kept sorted beside the index
(`vectors.keys.npy`) so membership checks never scan the corpus.
Loading reads the file into memory, or with `VectorConfig.faiss_mmap` memory-maps it (FAISS' IO_FLAG_MMAP_IFC):
start-up is then instant and processes share the page cache, but each page is faulted in on first use. A mapped
index is read-only (FAISS aborts on a write), so the first write re-reads the file into memory.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from qa.files import atomic_write
from qa.locks import ReadersWriterLock
from qa.vectors import (
    Neighbours,
    SavedInFolder,
    VectorConfig,
    VectorIndexError,
    empty_neighbours,
    exact_search,
    load_vector_index,
    read_meta,
    write_meta,
)

if TYPE_CHECKING:
    from qa.derived import Site
    from qa.schemas import Filters

log = logging.getLogger(__name__)

INDEX_FILE = "vectors.faiss"
KEYS_FILE = "vectors.keys.npy"
KINDS = ("flat", "hnsw", "ivf")

# Build and search times of each kind by corpus size: benchmarks/README.md, section 4.
FLAT_MAX = 20_000  # exact search stays fast below this
HNSW_MAX = 500_000  # HNSW up to here; IVF beyond: much faster to build, true deletes, less memory per vector
EXACT_FILTER_MAX = 4_096  # an `allowed` set this small is scored exactly
BUILD_PARAMS = frozenset({"m", "ef_construction", "nlist"})  # fixed once the index is built (the others are per search)
TOMBSTONE_RATIO = 0.2


def choose_kind(size: int) -> str:
    """The index kind `QA_FAISS_INDEX=auto` picks for a corpus of `size` vectors."""
    if size < FLAT_MAX:
        return "flat"
    return "hnsw" if size < HNSW_MAX else "ivf"


def default_params(kind: str, size: int) -> dict[str, int]:
    """Parameters derived from the corpus size (measured in benchmarks/README.md)."""
    if kind == "hnsw":
        m = 16 if size < 100_000 else 32
        return {"m": m, "ef_construction": 2 * m + 16, "ef_search": 64 if size < 100_000 else 128}
    if kind == "ivf":
        nlist = 2 ** max(4, round(math.log2(math.sqrt(max(size, 1)))))
        # A fifth of the cells: about the fewest probes that meet the recall@10 target of benchmarks/README.md on
        # e5-like vectors at 1M (section 4 has the recall/latency curve against nprobe); more cells were no better
        # per millisecond.
        return {"nlist": nlist, "nprobe": max(16, nlist // 5)}
    return {}


class FaissIndex(SavedInFolder):
    """One FAISS index of any kind behind `VectorIndex`; thread-safe (searches at once, writes alone)."""

    backend = "faiss"

    def __init__(
        self,
        dim: int,
        kind: str,
        params: dict[str, int] | None = None,
        expected_size: int = 0,
        *,
        directory: Path,
    ) -> None:
        if kind not in KINDS:
            raise VectorIndexError(f"unknown FAISS index kind {kind!r}; known: {', '.join(KINDS)}")
        self.dim = dim
        self.kind = kind
        self.directory = Path(directory)
        self.params = {**default_params(kind, expected_size), **(params or {})}
        self.auto = False  # whether the kind follows the corpus size (`QA_FAISS_INDEX=auto`): see `fits`
        self._lock = ReadersWriterLock()
        self._staged = []
        self._publishing = False  # within `publish`: an HNSW compaction waits for `save`
        self._compact_due = False
        self._index: faiss.Index | None = None if kind == "ivf" else self._new_faiss(kind)
        self._keys = np.zeros(0, dtype=np.int64)  # live keys, sorted
        self._tombstones = np.zeros(0, dtype=np.int64)  # hnsw only, sorted
        self._tombstone_sel: tuple[Any, ...] | None = None  # selector + the arrays it points into
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []  # ivf: vectors waiting for training
        self._train_size = max(39 * self.params.get("nlist", 1), min(expected_size, 64 * self.params.get("nlist", 1)))
        self._mapped_from: tuple[Path, int] | None = None  # (file, inode) while the index is a read-only map

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def create(cls, config: VectorConfig, dim: int, expected_size: int = 0, *, directory: Path) -> FaissIndex:
        kind = choose_kind(expected_size) if config.faiss_index == "auto" else config.faiss_index
        self = cls(dim, kind, expected_size=expected_size, directory=directory)
        self.auto = config.faiss_index == "auto"
        return self

    @classmethod
    def at(cls, site: Site, *, fresh: bool, size: int) -> FaissIndex | None:
        if fresh:
            return cls.create(site.vectors, site.dim, size, directory=site.directory)
        try:
            index = load_vector_index(site.vectors, site.directory)
        except VectorIndexError as exc:
            log.warning("vector index in %s unreadable (%s)", site.directory, exc)
            return None
        assert isinstance(index, FaissIndex)
        if index.dim == site.dim and len(index) == size and index.fits(size):
            return index
        log.warning("vector index in %s is a %s index of %d vectors", site.directory, index.kind, len(index))
        index.close()
        return None

    def fits(self, size: int) -> bool:
        """Of the kind, and built with the parameters, that `size` vectors call for (when they follow the corpus size:
        what a rebuild from the database would make, so a bulk build leaves what the next start would want)."""
        if not self.auto:
            return True
        kind = choose_kind(size)
        wanted = default_params(kind, size)
        return self.kind == kind and all(self.params.get(name) == wanted[name] for name in BUILD_PARAMS & set(wanted))

    def _new_faiss(self, kind: str, nlist: int | None = None) -> faiss.Index:
        if kind == "flat":
            return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        if kind == "hnsw":
            hnsw = faiss.IndexHNSWFlat(self.dim, self.params["m"], faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = self.params["ef_construction"]
            hnsw.hnsw.efSearch = self.params["ef_search"]
            return faiss.IndexIDMap2(hnsw)
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFScalarQuantizer(
            quantizer,
            self.dim,
            nlist or self.params["nlist"],
            faiss.ScalarQuantizer.QT_fp16,
            faiss.METRIC_INNER_PRODUCT,
        )
        ivf.own_fields = True
        quantizer.this.disown()  # the IVF index frees it
        ivf.nprobe = self.params["nprobe"]
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct(key) for the exact filter path
        return ivf

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "kind": self.kind, **self.params}

    def __len__(self) -> int:
        return len(self._keys)  # replaced whole by a write, never changed in place

    @property
    def ntotal(self) -> int:
        """Live vectors, under FAISS' name (tombstoned HNSW entries are not counted)."""
        return len(self)

    # --- writes ---------------------------------------------------------------------------------
    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.int64).ravel()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(keys), self.dim)
        if len(keys) == 0:
            return
        if len(np.unique(keys)) != len(keys):
            raise ValueError("duplicate keys in one add")
        with self._lock.writing():
            if _contains(self._keys, keys).any():
                raise ValueError("a key to add is already in the index: remove it first")
            self._make_owned()
            if self.kind == "hnsw" and _contains(self._tombstones, keys).any():
                self._compact()
            if self.kind == "ivf" and self._index is None:
                self._pending.append((keys, vectors))
                if sum(len(k) for k, _ in self._pending) >= self._train_size:
                    self._train_pending()
            else:
                assert self._index is not None
                self._index.add_with_ids(vectors, keys)
            self._keys = np.union1d(self._keys, keys)

    def remove(self, keys: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.int64).ravel()
        compact = False
        with self._lock.writing():
            keys = keys[_contains(self._keys, keys)]
            if len(keys) == 0:
                return
            self._make_owned()
            self._keys = np.setdiff1d(self._keys, keys, assume_unique=True)
            if self.kind == "ivf" and self._index is None:
                self._pending = [(k[~np.isin(k, keys)], v[~np.isin(k, keys)]) for k, v in self._pending]
            elif self.kind == "hnsw":
                self._tombstones = np.union1d(self._tombstones, keys)
                self._tombstone_sel = None
                compact = len(self._tombstones) > TOMBSTONE_RATIO * max(self._ntotal(), 1)
            else:
                assert self._index is not None
                # IVF's hashtable direct map only accepts an array selector; the flat index takes either.
                keys = np.ascontiguousarray(keys)
                self._index.remove_ids(faiss.IDSelectorArray(len(keys), faiss.swig_ptr(keys)))
        if compact and self._publishing:  # not while searches wait for the publish: when saving
            self._compact_due = True
        elif compact:
            self._compact_aside()

    def _train_if_pending(self, *, even_empty: bool = False) -> None:
        """IVF: an index not trained yet is trained on the vectors it holds (`even_empty`: also on none) before it is
        read."""
        if self.kind == "ivf" and self._index is None and (self._pending or even_empty):
            with self._lock.writing():
                if self._index is None:
                    self._train_pending()

    def _ntotal(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    def _train_pending(self) -> None:
        """IVF: train the cells on the vectors added so far, then add them (fewer cells for a small corpus)."""
        keys = np.concatenate([k for k, _ in self._pending]) if self._pending else np.zeros(0, np.int64)
        vectors = np.vstack([v for _, v in self._pending]) if self._pending else np.zeros((0, self.dim), np.float32)
        nlist = max(1, min(self.params["nlist"], len(keys) // 39))
        if nlist != self.params["nlist"]:
            log.info("IVF: %d vectors to train on, %d cells instead of %d", len(keys), nlist, self.params["nlist"])
            self.params = {"nlist": nlist, "nprobe": min(self.params["nprobe"], nlist)}
        index = self._new_faiss("ivf", nlist)
        sample = vectors[np.random.default_rng(0).permutation(len(vectors))[: 64 * nlist]]
        index.train(sample if len(sample) else np.zeros((nlist, self.dim), np.float32))
        index.add_with_ids(vectors, keys)
        self._index = index
        self._pending = []

    def _compact(self) -> None:
        """HNSW: rebuild the graph from the live vectors, dropping tombstones."""
        assert self._index is not None
        log.info("HNSW: rebuilding without %d tombstones (%d live)", len(self._tombstones), len(self._keys))
        vectors = self._reconstruct(self._keys)
        self._index = self._new_faiss("hnsw")
        self._index.add_with_ids(vectors, self._keys)
        self._tombstones = np.zeros(0, dtype=np.int64)
        self._tombstone_sel = None

    def _compact_aside(self) -> None:
        """`_compact`, the graph built while searches go on in the old one, then swapped in."""
        with self._lock.reading():
            live, tombstones = self._keys, self._tombstones
            log.info("HNSW: rebuilding without %d tombstones (%d live)", len(tombstones), len(live))
            vectors = self._reconstruct(live)
        graph = self._new_faiss("hnsw")
        graph.add_with_ids(vectors, live)
        with self._lock.writing():
            if self._keys is not live or self._tombstones is not tombstones:  # written meanwhile: compact it now
                self._compact()
                return
            self._index = graph
            self._tombstones = np.zeros(0, dtype=np.int64)
            self._tombstone_sel = None

    def publish(self) -> None:
        self._publishing = True
        try:
            super().publish()
        finally:
            self._publishing = False

    def _reconstruct(self, keys: np.ndarray) -> np.ndarray:
        assert self._index is not None
        if len(keys) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self._index.reconstruct_batch(keys), dtype=np.float32).reshape(len(keys), self.dim)

    # --- reads ----------------------------------------------------------------------------------
    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, *, filters: Filters | None = None
    ) -> Neighbours:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        self._train_if_pending()
        with self._lock.reading():
            if allowed is not None:
                allowed = np.unique(np.asarray(allowed, dtype=np.int64))
                allowed = allowed[_contains(self._keys, allowed)]
            pool = len(self._keys) if allowed is None else len(allowed)
            if k <= 0 or pool == 0:
                return empty_neighbours(len(queries), max(k, 0))
            if allowed is not None and self._exact_for(allowed):
                return exact_search(self._reconstruct(allowed), allowed, queries, k)
            return self._search(queries, k, allowed, pool)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which of `keys` are live (a bool mask) and their stored vectors, in order (IVF: from 16-bit floats).

        The retriever scores lexical-only candidates with these: from memory, far faster than reading SQLite.
        """
        keys = np.asarray(keys, dtype=np.int64)
        with self._lock.reading():
            if self._index is None or len(keys) == 0:
                return np.zeros(len(keys), dtype=bool), np.zeros((0, self.dim), dtype=np.float32)
            present = _contains(self._keys, keys)
            return present, self._reconstruct(keys[present])

    def _exact_for(self, allowed: np.ndarray) -> bool:
        """Score a filter's keys exactly when few (an ANN search under a narrow filter comes back short)."""
        narrow = self.kind != "flat" and len(allowed) < 0.05 * len(self._keys)
        return len(allowed) <= EXACT_FILTER_MAX or narrow

    def _search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None, pool: int) -> Neighbours:
        assert self._index is not None
        sel, widen = self._selector(allowed), len(self._keys) / pool
        if self.kind == "hnsw":
            ef = min(max(self.params["ef_search"], int(self.params["ef_search"] * widen), k), 4096)
            params: Any = faiss.SearchParametersHNSW(efSearch=ef)
        elif self.kind == "ivf":
            nprobe = min(self.params["nlist"], int(self.params["nprobe"] * widen))
            params = faiss.SearchParametersIVF(nprobe=nprobe)
        else:
            params = faiss.SearchParameters()
        if sel is not None:
            params.sel = sel[0]
        take = min(k, pool)
        # FAISS parallelises over questions: one question runs on one thread anyway, and idle OpenMP workers
        # spinning beside the question encoder's own threads slow the search down on a small machine.
        threads = faiss.omp_get_max_threads()
        if len(queries) == 1:
            faiss.omp_set_num_threads(1)  # this thread's setting only (an OpenMP ICV)
        try:
            scores, keys = self._index.search(queries, take, params=params)
        finally:
            faiss.omp_set_num_threads(threads)
        out = empty_neighbours(len(queries), k)
        out.scores[:, :take], out.keys[:, :take] = scores, keys
        out.scores[out.keys < 0] = -np.inf
        return out

    def _selector(self, allowed: np.ndarray | None) -> tuple[Any, ...] | None:
        """The ID selector for a search (returned with the objects it references, which must stay alive)."""
        if allowed is not None:
            return (faiss.IDSelectorBatch(allowed), allowed)  # tombstones are not live keys: already excluded
        if len(self._tombstones) == 0:
            return None
        if self._tombstone_sel is None:
            batch = faiss.IDSelectorBatch(self._tombstones)
            self._tombstone_sel = (faiss.IDSelectorNot(batch), batch, self._tombstones)
        return self._tombstone_sel

    # --- persistence ----------------------------------------------------------------------------
    def save(self, generation: int) -> None:
        directory = self.directory
        self._train_if_pending(even_empty=True)
        if self._compact_due:
            self._compact_due = False
            self._compact_aside()
        with self._lock.reading():  # writing the file only reads the index: searches go on beside it
            assert self._index is not None
            if self._mapped_from is None or self._mapped_from[0] != directory / INDEX_FILE:
                atomic_write(directory / INDEX_FILE, lambda tmp: faiss.write_index(self._index, tmp))
            atomic_write(directory / KEYS_FILE, lambda tmp: _save_npy(tmp, self._keys))
            write_meta(
                directory,
                {
                    **self.describe(),
                    "dim": self.dim,
                    "count": len(self._keys),
                    "ntotal": self._ntotal(),
                    "generation": generation,
                },
            )

    @classmethod
    def load(cls, config: VectorConfig, directory: Path) -> FaissIndex:
        directory = Path(directory)
        meta = read_meta(directory)
        file = directory / INDEX_FILE
        mmap = config.faiss_mmap
        try:
            index = faiss.read_index(str(file), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
            keys = np.load(directory / KEYS_FILE)
        except (RuntimeError, OSError, ValueError) as exc:  # FAISS raises RuntimeError on a damaged file
            raise VectorIndexError(f"cannot read the FAISS index in {directory}: {exc}") from exc
        if meta.get("kind") not in KINDS or int(index.d) != meta.get("dim") or len(keys) != meta.get("count"):
            raise VectorIndexError(f"the FAISS index in {directory} does not match its metadata")
        params = {k: int(v) for k, v in meta.items() if k in {"m", "ef_construction", "ef_search", "nlist", "nprobe"}}
        self = cls(int(index.d), meta["kind"], params, directory=directory)
        self.auto = config.faiss_index == "auto"
        self._index, self._keys = index, np.asarray(keys, dtype=np.int64)
        if mmap:
            self._mapped_from = (file, os.stat(file).st_ino)
        if self.kind == "hnsw":
            self._tombstones = np.setdiff1d(faiss.vector_to_array(index.id_map), self._keys)
        if index.ntotal != len(self._keys) + len(self._tombstones):
            raise VectorIndexError(f"the FAISS index in {directory} holds {index.ntotal} vectors, keys say otherwise")
        return self

    def _make_owned(self) -> None:
        """A memory-mapped index is read-only: before the first write, read it into memory."""
        if self._mapped_from is None:
            return
        file, inode = self._mapped_from
        if file.is_file() and os.stat(file).st_ino == inode:
            self._index = faiss.read_index(str(file))
        else:  # the file was replaced meanwhile: copy what is mapped
            assert self._index is not None
            self._index = faiss.deserialize_index(faiss.serialize_index(self._index))
        if self.kind == "ivf":
            self._index.set_direct_map_type(faiss.DirectMap.Hashtable)
        self._mapped_from = None

    def close(self) -> None:
        with self._lock.writing():
            self._index = None
            self._mapped_from = None


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Mask of `keys` present in `sorted_keys` (binary search: no allocation the size of the corpus)."""
    if len(sorted_keys) == 0 or len(keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    where = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return np.asarray(sorted_keys[where] == keys)


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array)
