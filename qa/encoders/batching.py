"""Micro-batching: concurrent encode calls from many request threads share one forward pass.

A leader/follower combiner. Callers queue their texts; whoever finds the model idle becomes the leader,
takes what is queued (up to `max_batch` texts), runs one forward pass and hands each caller its own rows.
Callers arriving during a pass queue up and become the next batch, so a lone caller waits for nothing and the
batch grows with the load by itself.
A failing pass fails exactly the callers whose texts were in it; the next caller becomes the leader.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

EncodeFn = Callable[[list[str]], np.ndarray]


class _Request:
    __slots__ = ("texts", "rows", "error", "done")

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.rows: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = False


class MicroBatcher:
    """Gathers concurrent `encode(texts)` calls into batched calls of `fn`; thread-safe, never deadlocks."""

    def __init__(self, fn: EncodeFn, *, max_batch: int = 32) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.fn = fn
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._busy = False

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        request = _Request(list(texts))
        if not request.texts:
            return self.fn([])
        with self._cond:
            self._pending.append(request)
            self._cond.notify_all()  # a leader gathering within max_wait re-checks the batch size
            while not request.done:
                if self._busy:
                    self._cond.wait()
                    continue
                self._busy = True
                try:
                    batch = self._gather()
                    self._cond.release()
                    try:
                        self._run(batch)
                    finally:
                        self._cond.acquire()
                finally:
                    self._busy = False
                    self._cond.notify_all()
        if request.error is not None:
            raise request.error
        assert request.rows is not None
        return request.rows

    __call__ = encode

    def _gather(self) -> list[_Request]:
        """Called with the lock held: the queued requests that fit in one batch (always at least one)."""
        batch: list[_Request] = []
        size = 0
        while self._pending and (not batch or size + len(self._pending[0].texts) <= self.max_batch):
            request = self._pending.pop(0)
            batch.append(request)
            size += len(request.texts)
        return batch

    def _run(self, batch: list[_Request]) -> None:
        """One forward pass for the batch; every request ends done, with its rows or the error."""
        texts = [t for r in batch for t in r.texts]
        try:
            vectors = self.fn(texts)
            if len(vectors) != len(texts):
                raise RuntimeError(f"encoder returned {len(vectors)} rows for {len(texts)} texts")
        except BaseException as exc:  # handed to every caller of the batch, re-raised in its own thread
            log.debug("batched encode of %d texts failed: %s", len(texts), exc)
            for request in batch:
                request.error = exc
                request.done = True
            return
        start = 0
        for request in batch:
            request.rows = vectors[start : start + len(request.texts)]
            start += len(request.texts)
            request.done = True
