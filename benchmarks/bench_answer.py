"""Answer selection's own cost per question at 100k passages, in-process, against the whole search it is part of.

Opens the 100k-passage index `benchmarks.bench_query` builds (run that first: `make bench` does), asks its 200
questions one at a time through `Retriever.search_many` (top 5, highlights and answer on, question-vector cache
off), and times the parts that answer selection adds: `AnswerModel.select` (candidates, features, utility,
calibration) and the read of the hits' title vectors. The rest of the search (encode, dense and BM25 candidates,
fusion, records, sentence vectors) is what the service did before answers existed. Target (issue 13): answer
selection adds at most 2 ms p50.

Run: `.venv/bin/python -m benchmarks.bench_answer` (part of `make bench`, after bench_query).
"""

from __future__ import annotations

import logging
import sys
import time

from benchmarks.bench_query import settings
from benchmarks.common import percentiles, questions, save
from qa.encoders import load_sentence_transformer, with_query_path
from qa.service import Service

log = logging.getLogger("bench.answer")
N_QUESTIONS = 200
WARM_UP = 10
TARGET_MS = 2.0


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = settings()
    if not (config.data_dir).is_dir():
        sys.exit(f"no index at {config.data_dir}: run `python -m benchmarks.bench_query` first")
    encoder = with_query_path(load_sentence_transformer(config), config)
    service = Service.load(config, encoder=encoder)
    retriever, store = service.retriever, service.store
    spent = [0.0]
    select, title_vectors = retriever.answers.select, store.title_vectors

    def timed(fn):  # the parts answer selection adds, summed per question
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[-1] += time.perf_counter() - started

        return wrapper

    retriever.answers.select = timed(select)  # type: ignore[method-assign]
    store.title_vectors = timed(title_vectors)  # type: ignore[method-assign]
    asked = questions()[:N_QUESTIONS]
    answer_s: list[float] = []
    search_s: list[float] = []
    answered = 0
    for n, question in enumerate(asked[:WARM_UP] + asked):
        spent.append(0.0)
        started = time.perf_counter()
        [result] = retriever.search_many([question], 5)
        elapsed = time.perf_counter() - started
        if n >= WARM_UP:
            answer_s.append(spent[-1])
            search_s.append(elapsed)
            answered += result.answer is not None
    passages = store.manifest().passages
    service.close()
    results = {
        "passages": passages,
        "questions": len(answer_s),
        "answered": answered,
        "answer_selection": percentiles(answer_s),
        "search": percentiles(search_s),
        "target_p50_ms": TARGET_MS,
    }
    log.info("%s", results)
    print(save("answer", results))


if __name__ == "__main__":
    main()
