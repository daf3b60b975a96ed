"""benchmarks/fit_answer.py: the shipped answer model is what the fit gives, and its comparison tolerates rounding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.fit_answer import MODEL_FILE, compare, halves

REPO = Path(__file__).resolve().parents[1]


def shipped() -> dict:
    return json.loads(MODEL_FILE.read_text(encoding="utf-8"))


def test_compare_names_each_number_that_strays_beyond_the_tolerance():
    model = shipped()
    assert compare(model, model) == []
    moved = json.loads(json.dumps(model))
    moved["weights"]["accented"]["cosine"] += 0.005  # within the tolerance
    intercept = moved["calibration"]["accented"]["intercept"]
    moved["calibration"]["accented"]["intercept"] += 0.005 * max(1.0, abs(intercept))  # relative beyond 1
    assert compare(model, moved) == []
    moved["weights"]["foreign"]["coverage"] += 0.5
    moved["threshold"] += 0.05
    differences = compare(model, moved)
    assert len(differences) == 2
    assert differences[0].startswith("weights foreign coverage") and differences[1].startswith("threshold")


def test_halves_keep_each_context_on_one_side():
    from types import SimpleNamespace

    questions = [SimpleNamespace(context=c) for c in "abcabcd"]
    first, second = halves(questions)  # type: ignore[arg-type]
    assert {q.context for q in first} == {"a", "c"} and {q.context for q in second} == {"b", "d"}
    assert len(first) + len(second) == len(questions)


@pytest.mark.slow
def test_the_fit_reproduces_the_shipped_model(eval_data_dir, default_model_dir):
    """Builds both eval indexes (once a session: `eval_data_dir`), asks every question, fits, and compares with
    qa/answer_model.json."""
    for cached in eval_data_dir.glob("eval-cache/answer-evidence-*.pkl"):  # asked afresh every time
        cached.unlink()
    env = {**os.environ, "QA_DATA_DIR": str(eval_data_dir), "QA_MODELS_DIR": str(default_model_dir.parent)}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.fit_answer", "--check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    measured = shipped()["measured"]["fitted on both (shipped)"]["xquad"]["answer@1"]
    assert report["fitted on both (shipped)"]["xquad"]["answer@1"] == pytest.approx(measured, abs=0.01)
