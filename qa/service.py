"""The loaded service: model, index, indexer and retriever, built once per process by the API or the CLI."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from qa.config import Settings
from qa.encoders import Encoder, load_encoder
from qa.indexing import Indexer, open_index
from qa.jobs import JobQueue
from qa.retriever import Hit, HitAnswer, Retriever
from qa.schemas import Answer, ArticleRef, AskHit, AskResponse, Scores, SearchOptions, Span
from qa.store import Store
from qa.timing import StageObserver

log = logging.getLogger(__name__)


class InFlight:
    """A count of calls in progress, safe across threads: `with in_flight:` around each; true while any runs."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self._count += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._count -= 1

    def __bool__(self) -> bool:
        return self._count > 0


@dataclass
class Service:
    settings: Settings
    encoder: Encoder
    store: Store
    indexer: Indexer
    retriever: Retriever
    load_seconds: float

    def __post_init__(self) -> None:
        self.asking = InFlight()  # the questions being answered right now

    @classmethod
    def load(
        cls,
        settings: Settings,
        *,
        encoder: Encoder | None = None,
        force_rebuild: bool = False,
        progress: bool = False,
    ) -> Service:
        """Load the model (unless given) and open the index, building or syncing it as needed."""
        started = time.perf_counter()
        encoder = encoder or load_encoder(settings)
        store = open_index(settings, encoder, force_rebuild=force_rebuild, progress=progress)
        indexer = Indexer.from_settings(store, encoder, settings)
        seconds = time.perf_counter() - started
        manifest = store.manifest()
        log.info(
            "ready in %.1f s: %d articles, %d passages, model %s",
            seconds,
            manifest.articles,
            manifest.passages,
            manifest.model,
        )
        return cls(settings, encoder, store, indexer, Retriever(store, encoder), seconds)

    def ask(
        self, questions: Sequence[str], options: SearchOptions, *, stages: StageObserver | None = None
    ) -> list[AskResponse]:
        """The answers to `questions` as the API gives them (one response each, in order); `stages` is told how long
        each stage of the search took (`qa.timing`)."""
        with self.asking:
            return self._ask(questions, options, stages)

    def questions_waiting(self) -> bool:
        """Whether questions are being answered right now: a job gives way to them (`qa.jobs.GivingWay`)."""
        return bool(self.asking)

    @cached_property
    def jobs(self) -> JobQueue:
        """The index's jobs (long writes): beside its database (`JobQueue.beside`)."""
        return JobQueue.beside(self.store.engine, self.store.path)

    def _ask(self, questions: Sequence[str], options: SearchOptions, stages: StageObserver | None) -> list[AskResponse]:
        started = time.perf_counter()
        results = self.retriever.search_many(
            questions,
            options.top_k,
            offset=options.offset,
            filters=options.filters,
            min_score=options.min_score,
            one_per_article=options.one_per_article,
            with_highlights=options.highlight,
            restore=options.restore,
            stages=stages,
        )
        took_ms = round((time.perf_counter() - started) * 1000, 2)
        return [
            AskResponse(
                question=question,
                answer=None if result.answer is None else answer_schema(result.answer),
                understood_as=result.understood_as,
                hits=[hit_schema(h) for h in result.hits],
                total=result.total,
                took_ms=took_ms,
                model=self.encoder.name,
            )
            for question, result in zip(questions, results, strict=True)
        ]

    def close(self) -> None:
        if "jobs" in self.__dict__:  # opened
            self.jobs.close()
        self.store.close()


def answer_schema(answer: HitAnswer) -> Answer:
    start, end = answer.span
    return Answer(
        text=answer.text,
        passage_id=answer.hit.passage.id,
        start=start,
        end=end,
        in_title=answer.in_title,
        score=answer.score,
        article=ArticleRef.model_validate(answer.hit.article, from_attributes=True),
    )


def hit_schema(hit: Hit) -> AskHit:
    return AskHit(
        passage_id=hit.passage.id,
        text=hit.passage.text,
        score=hit.score,
        scores=Scores(dense=hit.dense_score, lexical=hit.lexical_score),
        highlights=[Span(start=s, end=e) for s, e in hit.highlights],
        article=ArticleRef.model_validate(hit.article, from_attributes=True),
    )
