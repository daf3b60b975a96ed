"""The stages of a question, timed: the read path reports each stage's seconds to an observer it is given (the
API's metrics), so it needs to know nothing about where they go."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, Protocol, get_args

# restore: the tone marks of questions typed without them (`qa.restore`); encode: the questions into vectors;
# dense: the vector search; lexical: BM25, and in hybrid mode the fusion of both signals; hydrate: the hits' records
# read from the store; answer: highlights and the answer sentence.
Stage = Literal["restore", "encode", "dense", "lexical", "hydrate", "answer"]
STAGES: tuple[Stage, ...] = get_args(Stage)


class StageObserver(Protocol):
    def observe(self, stage: Stage, seconds: float) -> None:
        """`stage` of one search (all its questions together) took `seconds`."""


@contextmanager
def timed(observer: StageObserver | None, stage: Stage) -> Iterator[None]:
    """Report the block's wall time to `observer` as `stage`, also when it raises (a slow failure is still slow);
    no observer, no cost."""
    if observer is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        observer.observe(stage, time.perf_counter() - started)
