"""kill -9 in the middle of writes: on restart the index loads, is consistent, and answers."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from qa.store import Store
from tests.crash_worker import CHUNKING
from tests.fakes import HashingEncoder

REPO = Path(__file__).resolve().parents[1]


def check_consistent(path: Path) -> int:
    """Open after a crash and verify every invariant a reader relies on; returns the passage count."""
    store = Store.open(path)
    try:
        manifest = store.manifest()
        assert store._index.ntotal == manifest.passages, "FAISS must hold exactly the committed passages"
        for article in store.articles():
            passages = store.passages_of(article.id)
            assert passages, f"article {article.id} committed without its passages"
            assert [p.ordinal for p in passages] == list(range(len(passages)))
            version = article.body.split(" câu ")[0]
            for p in passages:
                # No passage from an older version of the article survives beside the new one.
                assert article.body[p.start : p.end] == p.text, f"{p.id} does not match its article's body"
                assert f"{version} câu" in p.text, f"{p.id} mixes versions of {article.id}"
        if manifest.passages:
            _, keys = store.search(HashingEncoder().encode_queries(["đảng viên Hà Nội"]), 5)
            found = store.passages_by_key([int(k) for k in keys[0] if k >= 0])
            assert len(found) == min(5, manifest.passages)
        assert manifest.chunking == CHUNKING
        return manifest.passages
    finally:
        store.close()


def run_and_kill(path: Path, seed: int, delay: float) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_worker", str(path), str(seed)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # wait until it is writing
    assert line.strip() == b"started", proc.stderr.read() if proc.stderr else line
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_kill_9_during_writes_leaves_a_consistent_index(tmp_path):
    rng = random.Random(20261122)
    path = tmp_path / "idx"
    trials = 12
    counts = []
    for trial in range(trials):
        run_and_kill(path, seed=trial, delay=rng.uniform(0.05, 1.5))
        counts.append(check_consistent(path))
    assert any(counts), "the worker never committed anything: the test did not exercise writes"


@pytest.mark.slow
def test_kill_9_during_qa_index_then_resume(tmp_path, default_model_dir):
    """The real command: kill `qa index` mid-way, restart it, and the index is complete and answers."""
    articles = tmp_path / "many.jsonl"
    rng = np.random.default_rng(7)
    words = "Hà Nội quận đảng viên ngân sách đại hội nghị quyết thành ủy cơ sở chỉ đạo công tác năm".split()
    with articles.open("w", encoding="utf-8") as fh:
        for i in range(120):
            text = ". ".join(" ".join(rng.choice(words, 12)) for _ in range(8)) + "."
            fh.write(f'{{"id": "bulk-{i}", "title": "Bài {i}", "body": "{text}"}}\n')
    env = {
        **os.environ,
        "QA_DATA_DIR": str(tmp_path / "data"),
        "QA_MODELS_DIR": str(default_model_dir.parent),
        "QA_SEEDS": str(REPO / "seeds"),
        "QA_BATCH_SIZE": "8",
    }
    qa = [sys.executable, "-m", "qa.cli"]
    proc = subprocess.Popen([*qa, "index", str(articles)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(25)  # model load (~5 s), seeds, then part of the bulk file
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    done = subprocess.run([*qa, "index", str(articles)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    store = Store.open(tmp_path / "data" / "default")
    assert store.manifest().articles == 125
    store.close()
    ask = subprocess.run(
        [*qa, "ask", "Quận Nam Từ Liêm có bao nhiêu đảng viên?", "-k", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ask.returncode == 0 and "10.254" in ask.stdout, ask.stdout + ask.stderr
