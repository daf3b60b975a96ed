"""Fit the answer-sentence selector (`qa/answer_model.json`) on the dev sets (evalsets/) and report how it carries over.

For every question of XQuAD-vi and MLQA-vi dev (with tone marks, without them, and XQuAD's English questions) the
retriever's top 5 hits are taken as the service takes them, and every candidate (each hit's sentences and title)
is described by `qa.answer.features`. A candidate is right when it contains a gold answer string (NFC,
case-insensitive). Per question class (`qa.answer.CLASSES`: Vietnamese with tone marks, without them, another
language):
- the utility is a conditional logit: the weights under which each question's right candidates are likeliest among
  its own (L2-regularised, L-BFGS from zero: deterministic);
- the calibration is a logistic regression of "the best candidate is right" on `qa.answer.calibration_inputs`,
  over the real questions and the same questions made unanswerable two ways: their own context's hits dropped, and
  asked of the other set's contexts.
The threshold is one for all: the one that maximises answer@1 + `DECLINE_WORTH` x the share of other-corpus
questions declined, over the Vietnamese sets.

Reported: fitted on XQuAD-vi and measured on MLQA-vi, and the reverse (answer@1, the share answered null, answer@1
had every question been answered, the share of unanswerable questions declined, both ways); English questions
exist for XQuAD only, so their weights are fitted on half its contexts and measured on the other half, both ways;
`--ablation` adds each feature left out; then the shipped model, fitted on everything. `--write` writes it,
`--check` fails unless the shipped file is what the fit gives (`compare`).

Run: `.venv/bin/python -m benchmarks.fit_answer [--write | --check] [--ablation]` (reads evalsets/; the eval
indexes are cached under the data dir's eval-cache/, as `qa eval` caches them, and so are the retrieved hits,
`answer-evidence-*.pkl`: delete those after a change to retrieval; a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from benchmarks.common import EVAL
from qa.answer import (
    CALIBRATION_INPUTS,
    CLASSES,
    FEATURES,
    AnswerModel,
    Evidence,
    calibration_inputs,
    features,
    question_class,
)
from qa.chunking import CHUNKING
from qa.config import Settings
from qa.encoders import load_encoder
from qa.eval import build_index, contains_answer, read_questions
from qa.query import Query
from qa.retriever import ANSWER_HITS, Retriever
from qa.text import strip_accents

MODEL_FILE = Path(__file__).resolve().parents[1] / "qa" / "answer_model.json"
L2 = 0.001  # per question, on every weight (chosen over 0.01 and 0.0001 on the cross-set figures)
# What declining a question the corpus does not cover is worth, against a right answer given (1.0): a quarter. A
# wrong sentence shown as the answer misleads, but the score beside it warns and the sources follow; declining a
# question the corpus does answer hides a right answer. The threshold (in steps of 0.01) maximises the sum (`fit`).
DECLINE_WORTH = 0.25
CHECK_TOLERANCE = 0.01  # `--check`: how far a fitted number may stray from the shipped one (relative beyond 1)

SETS = {  # name: (contexts, questions, accents stripped); their questions' class follows from the text
    "xquad": ("xquad_vi/contexts.jsonl", "xquad_vi/retrieval.jsonl", False),
    "xquad-unaccented": ("xquad_vi/contexts.jsonl", "xquad_vi/retrieval.jsonl", True),
    "xquad-en": ("xquad_vi/contexts.jsonl", "xquad_vi/retrieval_en.jsonl", False),
    "mlqa": ("mlqa_vi_dev/contexts.jsonl", "mlqa_vi_dev/retrieval.jsonl", False),
    "mlqa-unaccented": ("mlqa_vi_dev/contexts.jsonl", "mlqa_vi_dev/retrieval.jsonl", True),
}
# Each set's questions asked of the other set's contexts: a corpus that does not cover them (few of their answer
# strings occur there; a candidate that holds one still counts as right).
OTHER_CORPUS = {
    "xquad_vi/contexts.jsonl": "mlqa_vi_dev/contexts.jsonl",
    "mlqa_vi_dev/contexts.jsonl": "xquad_vi/contexts.jsonl",
}
OFF_CORPUS = {f"{name}@other": (OTHER_CORPUS[c], q, stripped) for name, (c, q, stripped) in SETS.items()}
FAMILIES = {"xquad": ("xquad", "xquad-unaccented"), "mlqa": ("mlqa", "mlqa-unaccented")}  # Vietnamese, per set
ENGLISH = "xquad-en"


@dataclass
class Question:
    query: Query
    context: str
    x: np.ndarray  # [candidates, features]
    right: np.ndarray  # bool per candidate


@dataclass
class Asked:
    """One question as the selector sees it: its text, answers, evidence (the top hits), and the idf of its words."""

    text: str
    answers: tuple[str, ...]
    context_id: str
    evidence: list[Evidence]
    idf: dict[tuple[str, bool], float]


def retrieve(name: str, settings: Settings, encoder) -> list[Asked]:
    """Each question of set `name` with the top hits the service finds for it, cached under the eval cache (the
    features are computed afresh from it on every run)."""
    cache = settings.data_dir / "eval-cache"
    path = cache / f"answer-evidence-{name}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    contexts, questions_file, stripped = {**SETS, **OFF_CORPUS}[name]
    store = build_index(EVAL / contexts, encoder, chunking=CHUNKING, cache_dir=cache)
    # Hits without highlights: the shipped model (perhaps of other features) is not read here.
    unused = AnswerModel(
        dict.fromkeys(CLASSES, dict.fromkeys(FEATURES, 0.0)),
        dict.fromkeys(CLASSES, dict.fromkeys(CALIBRATION_INPUTS, 0.0)),
        1.0,
    )
    retriever = Retriever(store, encoder, answers=unused)
    out: list[Asked] = []
    questions = read_questions(EVAL / questions_file)
    for start in range(0, len(questions), 64):
        batch = questions[start : start + 64]
        texts = [strip_accents(q.question) if stripped else q.question for q in batch]
        results = retriever.search_many(texts, ANSWER_HITS, with_highlights=False)
        for question, text, result in zip(batch, texts, results, strict=True):
            evidence = result.evidence  # the top hits as the service's selector sees them
            memo: dict[tuple[str, bool], float] = {}

            def idf(terms, folded, memo=memo):
                values = store.idf(terms, folded)
                memo.update({(t, folded): v for t, v in zip(terms, values, strict=True)})
                return values

            features(Query.parse(text), evidence, idf)
            out.append(Asked(text, question.answers, question.context_id, evidence, memo))
        print(f"{name}: {start + len(batch)}/{len(questions)}", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    store.close()
    path.write_bytes(pickle.dumps(out))
    return out


def labelled(asked: list[Asked], *, unanswerable: bool = False) -> list[Question]:
    """Candidates, features and labels; `unanswerable`: as if the question's own context were not indexed (its
    hits dropped), which is how a question the corpus cannot answer looks."""
    out = []
    for a in asked:
        query = Query.parse(a.text)
        evidence = [e for e in a.evidence if e.passage.article_id != a.context_id] if unanswerable else a.evidence
        candidates, x = features(query, evidence, lambda terms, folded, a=a: [a.idf[t, folded] for t in terms])
        right = np.array([contains_answer(c.text, a.answers) for c in candidates], dtype=bool)
        out.append(Question(query, a.context_id, x, right))
    return out


def fit_weights(questions: list[Question]) -> np.ndarray:
    """The conditional logit: weights under which each question's right candidates are likeliest among its own."""
    train = [q for q in questions if q.right.any() and len(q.right) > 1]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = 0.0, np.zeros_like(w)
        for q in train:
            u = q.x @ w
            p = np.exp(u - u.max())
            z_all = p.sum()
            z_right = p[q.right].sum()
            total -= math.log(z_right) - math.log(z_all)
            grad -= q.x.T @ (np.where(q.right, p, 0.0) / z_right - p / z_all)
        n = len(train)
        return total / n + L2 * float(w @ w), grad / n + 2 * L2 * w

    result = minimize(loss, np.zeros(len(FEATURES)), jac=True, method="L-BFGS-B", options={"maxiter": 1000})
    return np.round(result.x, 4)


def fit_calibration(questions: list[Question], w: np.ndarray) -> dict[str, float]:
    """Logistic regression of "the best candidate holds the answer" on `calibration_inputs`."""
    rows = [q for q in questions if len(q.right)]
    inputs = [calibration_inputs(q.x, q.x @ w) for q in rows]
    names = list(inputs[0])
    feats = np.array([[i[n] for n in names] for i in inputs])
    labels = np.array([q.right[int(np.argmax(q.x @ w))] for q in rows], dtype=np.float64)

    def loss(b: np.ndarray) -> tuple[float, np.ndarray]:
        p = 1.0 / (1.0 + np.exp(-(feats @ b)))
        eps = 1e-12
        value = -np.mean(labels * np.log(p + eps) + (1 - labels) * np.log(1 - p + eps))
        return float(value), feats.T @ (p - labels) / len(labels)

    b = minimize(loss, np.zeros(len(names)), jac=True, method="L-BFGS-B").x
    return {n: round(float(v), 4) for n, v in zip(names, b, strict=True)}


def measure(questions: list[Question], model: AnswerModel) -> dict[str, float]:
    """answer@1 (a null counts as wrong), the share answered null, and answer@1 had every question been answered."""
    right = nulls = chosen_right = 0
    for q in questions:
        if not len(q.right):
            nulls += 1
            continue
        u = model.utility(q.query, q.x)
        best = bool(q.right[int(np.argmax(u))])
        chosen_right += best
        if model.confidence(q.query, q.x, u) < model.threshold:
            nulls += 1
            continue
        right += best
    n = max(len(questions), 1)
    return {"answer@1": round(right / n, 4), "null": round(nulls / n, 4), "never null": round(chosen_right / n, 4)}


def fit(
    real: dict[str, list[Question]], missing: dict[str, list[Question]], off: dict[str, list[Question]]
) -> AnswerModel:
    """Per class, weights from the real questions, and a calibration from them and the same questions made
    unanswerable both ways (`missing`: their own context's hits dropped; `off`: asked of the other corpus); a class
    with no questions keeps zero weights. Then the threshold that maximises, summed over the Vietnamese sets (the
    English one when it is alone), answer@1 + `DECLINE_WORTH` x the share of `off` declined."""
    weights, calibration = {}, {}
    for name in CLASSES:

        def ours(sets: dict[str, list[Question]], name: str = name) -> list[Question]:
            return [q for qs in sets.values() for q in qs if question_class(q.query) == name]

        w = fit_weights(ours(real)) if ours(real) else np.zeros(len(FEATURES))
        weights[name] = dict(zip(FEATURES, w.tolist(), strict=True))
        unknown = ours(missing) + ours(off)
        calibration[name] = (
            fit_calibration(ours(real) + unknown, w) if ours(real) else dict.fromkeys(CALIBRATION_INPUTS, 0.0)
        )
    judged = [name for name in real if name != ENGLISH] or list(real)

    def worth(threshold: float) -> float:
        model = AnswerModel(weights, calibration, threshold)
        return sum(measure(real[n], model)["answer@1"] + DECLINE_WORTH * measure(off[n], model)["null"] for n in judged)

    best = max((step / 100 for step in range(100)), key=lambda t: (round(worth(t), 6), -t))
    return AnswerModel(weights, calibration, best)


def ablation(real: dict[str, list[Question]]) -> dict[str, dict[str, float]]:
    """Selection quality (answer@1 never null) of Vietnamese questions with tone marks, with every feature and with
    each one left out (its column zeroed), fitted on one set and measured on the other, both ways."""

    def without(questions: list[Question], column: int | None) -> list[Question]:
        if column is None:
            return questions
        out = []
        for q in questions:
            x = q.x.copy()
            x[:, column] = 0.0
            out.append(Question(q.query, q.context, x, q.right))
        return out

    def never_null(questions: list[Question], w: np.ndarray) -> float:
        return round(float(np.mean([len(q.right) and q.right[int(np.argmax(q.x @ w))] for q in questions])), 4)

    rows = {}
    for label, column in [("all features", None), *((f"without {f}", i) for i, f in enumerate(FEATURES))]:
        xquad, mlqa = without(real["xquad"], column), without(real["mlqa"], column)
        rows[label] = {
            "xquad → mlqa": never_null(mlqa, fit_weights(xquad)),
            "mlqa → xquad": never_null(xquad, fit_weights(mlqa)),
        }
    return rows


def halves(questions: list[Question]) -> tuple[list[Question], list[Question]]:
    """Questions split by their context (sorted ids, alternately), so no context is on both sides."""
    contexts = sorted({q.context for q in questions})
    first = set(contexts[::2])
    return [q for q in questions if q.context in first], [q for q in questions if q.context not in first]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write the fitted model to {MODEL_FILE}")
    parser.add_argument("--check", action="store_true", help="fail unless the shipped model is what the fit gives")
    parser.add_argument(
        "--ablation", action="store_true", help="also: each feature left out, fitted on one set, measured on the other"
    )
    args = parser.parse_args()
    settings = Settings()
    encoder = load_encoder(settings)
    asked = {name: retrieve(name, settings, encoder) for name in SETS}
    real = {name: labelled(a) for name, a in asked.items()}
    missing = {name: labelled(a, unanswerable=True) for name, a in asked.items()}
    off = {name: labelled(retrieve(f"{name}@other", settings, encoder)) for name in SETS}

    def report_for(model: AnswerModel, names) -> dict[str, dict[str, float]]:
        return {
            name: {
                **measure(real[name], model),
                "null, own context gone": measure(missing[name], model)["null"],
                "null, other corpus": measure(off[name], model)["null"],
            }
            for name in names
        }

    report: dict[str, dict[str, dict[str, float]]] = {}
    for train, names in FAMILIES.items():
        model = fit({n: real[n] for n in names}, {n: missing[n] for n in names}, {n: off[n] for n in names})
        report[f"fitted on {train}"] = report_for(model, [n for family in FAMILIES.values() for n in family])
    a, b = halves(real[ENGLISH])
    ma, mb = halves(missing[ENGLISH])
    oa, ob = halves(off[ENGLISH])
    for label, (train, test, mtrain, otrain) in {"first": (a, b, ma, oa), "second": (b, a, mb, ob)}.items():
        model = fit({ENGLISH: train}, {ENGLISH: mtrain}, {ENGLISH: otrain})
        report[f"English, fitted on the {label} half of the contexts"] = {"other half": measure(test, model)}
    if args.ablation:
        report["ablation (never null; fitted on xquad → mlqa, fitted on mlqa → xquad)"] = ablation(real)
    shipped = fit(real, missing, off)
    report["fitted on both (shipped)"] = report_for(shipped, list(SETS))
    out = {
        "about": "Answer-sentence selector of qa/answer.py, fitted by benchmarks/fit_answer.py on XQuAD-vi and "
        "MLQA-vi dev (CC BY-SA 4.0 and 3.0; this file is derived from them and shares their license).",
        "weights": {name: dict(zip(FEATURES, w.round(4).tolist(), strict=True)) for name, w in shipped.weights.items()},
        "calibration": shipped.calibration,
        "threshold": shipped.threshold,
        "measured": report,
    }
    print(json.dumps(report, indent=2))
    if args.write:
        MODEL_FILE.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.check:
        shipped_file = json.loads(MODEL_FILE.read_text(encoding="utf-8"))
        if differences := compare(shipped_file, out):
            sys.exit(f"{MODEL_FILE} is not what the fit gives (run with --write): {'; '.join(differences)}")


def compare(shipped: dict, fitted: dict, tolerance: float = CHECK_TOLERANCE) -> list[str]:
    """Where two models differ by more than `tolerance`, relative to the number's size when it is over 1 (the fit
    repeats exactly on cached indexes; indexes built afresh may differ in the encoder's last float digits, which
    the calibration's large coefficients magnify: -30.946 against -30.935 was seen)."""
    out = []
    for part in ("weights", "calibration"):
        for name in CLASSES:
            for key, value in fitted[part][name].items():
                mine = shipped[part][name].get(key, math.inf)
                if abs(mine - value) > tolerance * max(1.0, abs(mine)):
                    out.append(f"{part} {name} {key}: {mine} vs {value}")
    if abs(shipped["threshold"] - fitted["threshold"]) > tolerance + 1e-9:
        out.append(f"threshold: {shipped['threshold']} vs {fitted['threshold']}")
    return out


if __name__ == "__main__":
    main()
