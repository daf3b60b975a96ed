"""Every FAISS index kind behind `VectorIndex`: add, remove, filtered search, save/load, recall against exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qa.vectors import VectorConfig, exact_search, load_vector_index, make_vector_index
from qa.vectors.faiss import FaissIndex, choose_kind, default_params

DIM = 32
# IVF stores 16-bit floats: its scores and vectors are close, not exact.
ATOL = {"flat": 1e-5, "hnsw": 1e-5, "ivf": 2e-3}
SMALL = {"flat": {}, "hnsw": {"m": 16, "ef_construction": 64, "ef_search": 64}, "ivf": {"nlist": 16, "nprobe": 16}}


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


UNSAVED = Path("/nonexistent/not-saved")  # where an index that a test never saves would go


def build(
    kind: str, n: int = 2000, seed: int = 0, directory: Path = UNSAVED
) -> tuple[FaissIndex, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = unit(rng, n)
    keys = np.arange(n, dtype=np.int64) * 7 + 3  # sparse, like SQLite keys after deletes
    index = FaissIndex(DIM, kind, SMALL[kind], expected_size=n, directory=directory)
    index.add(keys[: n // 2], vectors[: n // 2])  # two batches: the IVF trains on the first
    index.add(keys[n // 2 :], vectors[n // 2 :])
    return index, keys, vectors


@pytest.fixture(params=["flat", "hnsw", "ivf"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_each_vector_finds_itself(kind: str) -> None:
    index, keys, vectors = build(kind)
    assert len(index) == len(keys)
    scores, found = index.search(vectors[:50], 3)
    assert found.dtype == np.int64 and scores.shape == (50, 3)
    assert np.array_equal(found[:, 0], keys[:50])
    assert np.allclose(scores[:, 0], 1.0, atol=ATOL[kind])
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_lookup_returns_live_vectors_only(kind: str, tmp_path: Path) -> None:
    index, keys, vectors = build(kind, directory=tmp_path)
    index.remove(keys[:10])  # HNSW keeps them as tombstones: still not live
    asked = np.concatenate([keys[5:15], [999_999]])
    present, found = index.lookup(asked)
    assert present.tolist() == [False] * 5 + [True] * 5 + [False]
    assert np.allclose(found, vectors[10:15], atol=ATOL[kind])
    index.save(1)
    for mmap in (False, True):
        loaded = load_vector_index(VectorConfig(faiss_mmap=mmap), tmp_path)
        present, found = loaded.lookup(asked)
        assert present.sum() == 5 and np.allclose(found, vectors[10:15], atol=ATOL[kind])
        loaded.close()


def test_removed_keys_never_come_back(kind: str) -> None:
    index, keys, vectors = build(kind)
    gone = keys[:300]
    index.remove(gone)
    index.remove(gone[:10])  # removing twice is harmless
    assert len(index) == len(keys) - 300
    _, found = index.search(vectors[:300], 10)
    assert not np.isin(found, gone).any()
    # A key may be added again (HNSW drops its tombstone first) and is found once.
    index.add(gone[:5], vectors[:5])
    _, found = index.search(vectors[:5], 2)
    assert np.array_equal(found[:, 0], gone[:5]) and not np.array_equal(found[:, 1], found[:, 0])


def test_hnsw_compacts_tombstones() -> None:
    index, keys, vectors = build("hnsw")
    index.remove(keys[:500])  # > 20% of 2000: the graph is rebuilt
    assert len(index._tombstones) == 0 and index._ntotal() == len(keys) - 500
    _, found = index.search(vectors[500:520], 1)
    assert np.array_equal(found[:, 0], keys[500:520])


def test_a_published_write_leaves_the_hnsw_compaction_to_the_save(tmp_path) -> None:
    """Searches wait for a publish, not for a save: the graph is rebuilt when the index is saved."""
    from qa.derived import PassageRow

    index, keys, vectors = build("hnsw", directory=tmp_path)
    index.apply([int(k) for k in keys[:500]], [])
    assert len(index._tombstones) == 500  # published: the removed keys are tombstones, not yet compacted
    _, found = index.search(vectors[:20], 1)
    assert not np.isin(found, keys[:500]).any()
    index.save(1)
    assert len(index._tombstones) == 0 and index._ntotal() == len(keys) - 500
    index.apply([], [PassageRow(5, "", vectors[0])])
    _, found = index.search(vectors[:1], 1)
    assert found[0, 0] == 5


@pytest.mark.parametrize("n_allowed", [5, 1500])  # exact path, and the ID-selector path
def test_allowed_filter(kind: str, n_allowed: int) -> None:
    index, keys, vectors = build(kind)
    index.remove(keys[:20])
    rng = np.random.default_rng(1)
    allowed = rng.choice(keys, n_allowed, replace=False)
    queries = unit(rng, 20)
    scores, found = index.search(queries, 10, allowed=np.append(allowed, [999_999_999]))  # unknown keys ignored
    live = allowed[~np.isin(allowed, keys[:20])]
    valid = found >= 0
    assert np.isin(found[valid], live).all()
    assert valid.sum(axis=1).min() == min(10, len(live))
    if n_allowed == 5 or kind == "flat":  # exact: the same as brute force over the allowed vectors
        reference = exact_search(vectors[np.searchsorted(keys, live)], live, queries, 10)
        assert np.array_equal(found, reference.keys)
    assert np.all(scores[~valid] == -np.inf)


def test_empty_and_oversized_k(kind: str) -> None:
    index = FaissIndex(DIM, kind, SMALL[kind], directory=UNSAVED)
    scores, found = index.search(unit(np.random.default_rng(2), 2), 5)
    assert found.shape == (2, 5) and (found == -1).all()
    index.add(np.array([1, 2], dtype=np.int64), unit(np.random.default_rng(3), 2))
    _, found = index.search(unit(np.random.default_rng(4), 1), 5)
    assert sorted(found[0, :2].tolist()) == [1, 2] and (found[0, 2:] == -1).all()
    with pytest.raises(ValueError, match="already"):
        index.add(np.array([1], dtype=np.int64), unit(np.random.default_rng(5), 1))


@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_round_trip(kind: str, mmap: bool, tmp_path: Path) -> None:
    index, keys, vectors = build(kind, directory=tmp_path)
    index.remove(keys[:10])
    queries = unit(np.random.default_rng(6), 30)
    before = index.search(queries, 10)
    index.save(1)
    config = VectorConfig(faiss_mmap=mmap)
    loaded = load_vector_index(config, tmp_path)
    assert isinstance(loaded, FaissIndex) and loaded.kind == kind and len(loaded) == len(index)
    assert loaded.saved_generation() == 1
    after = loaded.search(queries, 10)
    assert np.array_equal(before.keys, after.keys)
    assert np.allclose(before.scores, after.scores)
    # Writes after a (memory-mapped) load work, and a second save/load sees them.
    loaded.remove(keys[10:20])
    loaded.add(np.array([10**9], dtype=np.int64), vectors[15:16])
    loaded.save(2)
    again = load_vector_index(config, tmp_path)
    assert again.saved_generation() == 2
    _, found = again.search(vectors[15:16], 1)
    assert found[0, 0] == 10**9
    assert len(again) == len(keys) - 20 + 1


def test_recall_against_flat(kind: str) -> None:
    index, keys, vectors = build(kind, n=5000, seed=7)
    queries = unit(np.random.default_rng(8), 100)
    truth = exact_search(vectors, keys, queries, 10).keys
    found = index.search(queries, 10).keys
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
    assert recall >= (1.0 if kind == "flat" else 0.9), recall


def test_kind_and_parameters_follow_the_corpus_size() -> None:
    assert [choose_kind(n) for n in (0, 10_000, 100_000, 1_000_000)] == ["flat", "flat", "hnsw", "ivf"]
    assert default_params("ivf", 1_000_000)["nlist"] == 1024
    assert default_params("ivf", 4_000_000)["nlist"] == 2048
    assert default_params("hnsw", 200_000)["m"] > default_params("hnsw", 30_000)["m"]
    auto = make_vector_index(VectorConfig(), dim=8, expected_size=50_000, directory=UNSAVED)
    assert auto.kind == "hnsw"
    forced = make_vector_index(VectorConfig(faiss_index="flat"), dim=8, expected_size=50_000, directory=UNSAVED)
    assert forced.kind == "flat"


def test_an_ivf_flat_index_saved_by_an_earlier_version_still_loads_and_answers(tmp_path: Path, monkeypatch) -> None:
    import faiss

    import qa.vectors.faiss as module

    def ivf_flat(quantizer, dim, nlist, _codec, metric):  # what earlier versions built
        return faiss.IndexIVFFlat(quantizer, dim, nlist, metric)

    with monkeypatch.context() as patch:
        patch.setattr(module.faiss, "IndexIVFScalarQuantizer", ivf_flat)
        index, keys, vectors = build("ivf", directory=tmp_path)
        assert isinstance(faiss.downcast_index(index._index), faiss.IndexIVFFlat)
        index.save(1)
    loaded = load_vector_index(VectorConfig(), tmp_path)
    scores, found = loaded.search(vectors[:20], 1)
    assert np.array_equal(found[:, 0], keys[:20]) and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    present, got = loaded.lookup(keys[:5])
    assert present.all() and np.allclose(got, vectors[:5], atol=1e-6)
    loaded.remove(keys[:3])  # a write after loading keeps working
    assert len(loaded) == len(keys) - 3


def test_an_auto_index_fits_the_size_it_was_built_for_not_one_calling_for_other_parameters():
    built = FaissIndex.create(VectorConfig(), DIM, 50_000, directory=UNSAVED)
    assert built.kind == "hnsw" and built.fits(50_000) and built.fits(60_000)
    assert not built.fits(150_000)  # HNSW past 100k is built with more links (default_params)
    assert not built.fits(10)  # and a small corpus is searched exactly
    forced = FaissIndex.create(VectorConfig(faiss_index="hnsw"), DIM, 50_000, directory=UNSAVED)
    assert forced.fits(10) and forced.fits(150_000)  # a kind the operator chose is kept
