"""`qa eval`: index a retrieval set through the service's own pipeline and measure Recall@k, MRR@10, answer hits,
and, asked without tone marks, how well they were restored (`qa.restore`).

Input is the shared format (`contexts.jsonl`: context_id, title, text; `retrieval.jsonl`: id, question,
answers, context_id). Contexts become `Article`s, go through `Indexer` (chunking, encoder, `Store`) into a
cached index under `embeddings/eval-cache/`, and questions go through the same `Retriever` the API uses.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from qa.domain import Article
from qa.encoders import Encoder
from qa.files import read_jsonl
from qa.indexing import Indexer
from qa.retriever import ANSWER_HITS, Hit, Retriever
from qa.store import Store, StoreError
from qa.text import normalize, strip_accents, tokenize

log = logging.getLogger(__name__)

EVAL_ORIGIN = "eval"
# `qa eval --whole-contexts`: every context one passage (no context in the eval sets comes near the bound).
WHOLE_CONTEXTS = {"target_words": 100_000, "max_words": 100_000, "min_words": 1, "overlap_sentences": 0}
_COMPLETE_MARK = "eval-complete"


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]
    context_id: str


@dataclass(frozen=True, slots=True)
class EvalReport:
    questions: int
    recall: dict[int, float]
    mrr_at_10: float
    answer_hit: dict[int, float]
    mode: str
    strip_accents: bool
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "recall": {str(k): round(v, 4) for k, v in sorted(self.recall.items())},
            "mrr@10": round(self.mrr_at_10, 4),
            "answer_hit": {str(k): round(v, 4) for k, v in sorted(self.answer_hit.items())},
            "mode": self.mode,
            "strip_accents": self.strip_accents,
            **self.extra,
        }


def read_contexts(path: Path) -> list[Article]:
    """Contexts as articles: id = context_id, title = title, body = text (normalised as the corpus reader does)."""
    return [
        Article(
            id=str(row["context_id"]),
            title=normalize(str(row.get("title") or "")),
            body=normalize(str(row["text"])),
            published_at=None,
            source=None,
            author=None,
            fingerprint=hashlib.sha256(json.dumps(row, sort_keys=True).encode()).hexdigest(),
        )
        for _, row in read_jsonl(path)
    ]


def read_questions(path: Path) -> list[Question]:
    return [
        Question(
            id=str(row["id"]),
            question=str(row["question"]),
            answers=tuple(str(a) for a in row.get("answers") or ()),
            context_id=str(row["context_id"]),
        )
        for _, row in read_jsonl(path)
    ]


def cache_key(contexts: Path, model: str, chunking: dict[str, int], sentence_vectors: bool = True) -> str:
    digest = hashlib.sha256(Path(contexts).read_bytes())
    config: dict[str, Any] = {"model": model, "chunking": chunking}
    if not sentence_vectors:  # only the non-default setting enters the key: default-setting keys stay valid
        config["sentence_vectors"] = False
    digest.update(json.dumps(config, sort_keys=True).encode())
    return digest.hexdigest()[:20]


def build_index(
    contexts: Path,
    encoder: Encoder,
    *,
    chunking: dict[str, int],
    cache_dir: Path,
    progress: bool = True,
    sentence_vectors: bool = True,
) -> Store:
    """The contexts indexed through `Indexer`, reused from `cache_dir` when contexts, model, chunking and the
    sentence-vector setting match."""
    folder = Path(cache_dir) / cache_key(contexts, encoder.name, chunking, sentence_vectors)
    if folder.exists():
        try:
            store = Store.open(folder)
            complete = store.manifest().extra.get(_COMPLETE_MARK)
            if complete and (store.has_sentence_vectors() or not sentence_vectors):
                log.info("reusing cached eval index %s", folder)
                return store
            store.close()
        except StoreError as exc:
            log.warning("cached eval index %s unusable (%s): rebuilding it", folder, exc)
        shutil.rmtree(folder, ignore_errors=True)
    store = Store.create(folder, model=encoder.name, dim=encoder.dim, chunking=chunking)
    indexer = Indexer(store, encoder, chunking=chunking, sentence_vectors=sentence_vectors)
    indexer.add(read_contexts(contexts), origin=EVAL_ORIGIN, progress=progress)
    store.set_meta(**{_COMPLETE_MARK: True, "contexts": str(contexts)})
    return store


def contains_answer(text: str, answers: Sequence[str]) -> bool:
    folded = normalize(text).casefold()
    return any(a and normalize(a).casefold() in folded for a in answers)


def _rank_of(hits: Sequence[Hit], context_id: str) -> int | None:
    return next((rank for rank, h in enumerate(hits, 1) if h.article.id == context_id), None)


def evaluate(
    retriever: Retriever,
    questions: Sequence[Question],
    *,
    ks: Sequence[int] = (1, 5, 10),
    accent_free: bool = False,
    restore: bool = True,
    batch_size: int = 64,
    progress: bool = True,
) -> EvalReport:
    """Recall@k and MRR@10 by context (one hit per context); answer hits at 1 and 5 (a passage among the top k
    contains an answer string); and, asked as the API asks (top 5 hits, highlights and answer), `answer@1`: the
    chosen answer contains an answer string (a null answer counts as wrong), `answer_null`: the share answered
    null, `highlight_hit@1`: the top hit's highlight contains an answer string, and `highlight_hit@answer5`: of the
    top 5 hits whose passage contains an answer string, the share whose highlight contains it too. `accent_free`:
    the questions are asked without their tone marks, and `restored_syllables` / `restored_questions` say how many
    words (tokens with a letter) and whole questions were understood as the original spells them (`qa.restore`;
    with `restore` false, read as typed)."""
    depth = max([*ks, 10])
    recall = dict.fromkeys(ks, 0)
    answer_hit = dict.fromkeys((1, 5), 0)
    reciprocal = 0.0
    answers = nulls = highlight_hits = 0
    answer_passages = answer_highlights = 0
    words = words_right = questions_right = 0
    bar = tqdm(total=len(questions), desc="questions", unit="q", disable=not progress)
    for start in range(0, len(questions), batch_size):
        batch = questions[start : start + batch_size]
        texts = [strip_accents(q.question) if accent_free else q.question for q in batch]
        results = retriever.search_many(texts, depth, one_per_article=True, with_highlights=False, restore=restore)
        asked = retriever.search_many(texts, ANSWER_HITS, restore=restore)
        for question, text, result, top in zip(batch, texts, results, asked, strict=True):
            right, total = _restored_words(question.question, top.understood_as or text)
            words, words_right, questions_right = words + total, words_right + right, questions_right + (right == total)
            rank = _rank_of(result.hits, question.context_id)
            for k in recall:
                recall[k] += rank is not None and rank <= k
            reciprocal += 1.0 / rank if rank is not None and rank <= 10 else 0.0
            for k in answer_hit:
                answer_hit[k] += any(contains_answer(h.passage.text, question.answers) for h in result.hits[:k])
            nulls += top.answer is None
            answers += top.answer is not None and contains_answer(top.answer.text, question.answers)
            highlight_hits += _highlight_hit(top.hits[:1], question.answers)
            for hit in top.hits:
                if contains_answer(hit.passage.text, question.answers):
                    answer_passages += 1
                    answer_highlights += _highlight_hit([hit], question.answers)
        bar.update(len(batch))
    bar.close()
    n = max(len(questions), 1)
    restoration = {}
    if accent_free:
        restoration = {
            "restored_syllables": round(words_right / max(words, 1), 4),
            "restored_questions": round(questions_right / n, 4),
        }
    return EvalReport(
        questions=len(questions),
        recall={k: v / n for k, v in recall.items()},
        mrr_at_10=reciprocal / n,
        answer_hit={k: v / n for k, v in answer_hit.items()},
        mode=retriever.mode,
        strip_accents=accent_free,
        extra={
            "answer@1": round(answers / n, 4),
            "answer_null": round(nulls / n, 4),
            "highlight_hit@1": round(highlight_hits / n, 4),
            "highlight_hit@answer5": round(answer_highlights / max(answer_passages, 1), 4),
            **restoration,
        },
    )


def _restored_words(original: str, understood: str) -> tuple[int, int]:
    """How many of the words (tokens with a letter) of `original` `understood` spells alike, of how many."""
    expected, got = tokenize(original), tokenize(understood)
    if len(expected) != len(got):  # restoration only changes letters, never where tokens split
        return 0, sum(any(c.isalpha() for c in t) for t in expected)
    pairs = [(e, g) for e, g in zip(expected, got, strict=True) if any(c.isalpha() for c in e)]
    return sum(e == g for e, g in pairs), len(pairs)


def _highlight_hit(hits: Sequence[Hit], answers: Sequence[str]) -> bool:
    """The top hit's highlighted sentences contain an answer string."""
    return bool(hits) and any(contains_answer(hits[0].passage.text[a:b], answers) for a, b in hits[0].highlights)


def format_report(report: EvalReport) -> str:
    recall = "  ".join(f"R@{k} {v:.3f}" for k, v in sorted(report.recall.items()))
    hits = "  ".join(f"answer@{k} {v:.3f}" for k, v in sorted(report.answer_hit.items()))
    accents = ", accents stripped" if report.strip_accents else ""
    return (
        f"{report.questions} questions, mode {report.mode}{accents}\n"
        f"{recall}  MRR@10 {report.mrr_at_10:.3f}\n{hits}  highlight@1 {report.extra['highlight_hit@1']:.3f}"
        f"  highlight@answer5 {report.extra['highlight_hit@answer5']:.3f}\n"
        f"answer sentence@1 {report.extra['answer@1']:.3f}  no answer {report.extra['answer_null']:.3f}"
        + (
            f"\nrestored: syllables {report.extra['restored_syllables']:.3f}"
            f"  whole questions {report.extra['restored_questions']:.3f}"
            if "restored_syllables" in report.extra
            else ""
        )
    )
