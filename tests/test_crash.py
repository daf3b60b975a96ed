"""kill -9 in the middle of writes: on restart the index loads, is consistent, and answers."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from qa.corpus import read_articles
from qa.store import Manifest, Store
from tests.crash_worker import CHUNKING
from tests.fakes import HashingEncoder
from tests.servers import wait_for

REPO = Path(__file__).resolve().parents[1]


def check_consistent(path: Path) -> Manifest:
    """Open after a crash and verify every invariant a reader relies on; returns the manifest."""
    store = Store.open(path)
    try:
        manifest = store.manifest()
        assert store.index.ntotal == manifest.passages, "FAISS must hold exactly the committed passages"
        assert len(store.lexical) == manifest.passages, "the lexical engine must hold exactly the committed passages"
        assert store.lexical.saved_generation() == store.index.saved_generation() == manifest.generation
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
        return manifest
    finally:
        store.close()


def run_and_kill(path: Path, seed: int, writes: int, delay: float, log: Path) -> int:
    """Run the worker until it reports `writes` committed writes, let it go on `delay` seconds (so the kill lands
    inside or between later writes), then kill -9 it; returns the last generation it reported committed."""
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.crash_worker", str(path), str(seed)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=err,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    assert proc.stdout is not None
    try:
        lines = [proc.stdout.readline() for _ in range(1 + writes)]
        assert lines[0] == b"started\n" and all(line.startswith(b"committed ") for line in lines[1:]), (
            lines,
            log.read_text(errors="replace")[-3000:],
        )
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    return int(lines[-1].split()[1])


def test_kill_9_during_writes_leaves_a_consistent_index(tmp_path):
    """Each trial kills the writer after a seeded number of reported writes (plus a seeded moment, so the kill
    often lands mid-write): the index opens consistent and keeps every write the worker reported committed."""
    rng = random.Random(20261122)
    path = tmp_path / "idx"
    generation = 0
    for trial in range(12):
        reported = run_and_kill(path, trial, rng.randint(1, 20), rng.uniform(0.0, 0.05), tmp_path / "worker.log")
        assert reported > generation, "the reported writes changed nothing: the trial did not exercise writes"
        manifest = check_consistent(path)
        assert manifest.generation >= reported, "a write reported committed was lost"
        generation = manifest.generation


def _bulk_file(path: Path, n: int) -> None:
    """`n` articles of one short sentence: one small passage each, cheap to encode."""
    rng = np.random.default_rng(7)
    words = "Hà Nội quận đảng viên ngân sách đại hội nghị quyết thành ủy cơ sở chỉ đạo công tác năm".split()
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(
                json.dumps({"id": f"bulk-{i}", "title": f"Bài {i}", "body": " ".join(rng.choice(words, 12)) + "."})
            )
            fh.write("\n")


def _manifest_articles(index: Path) -> int:
    """Articles in the index's last committed write (`manifest.json`, written after each commit), 0 before any."""
    try:
        return json.loads((index / "manifest.json").read_text(encoding="utf-8"))["articles"]
    except FileNotFoundError:
        return 0


def check_articles(index: Path) -> int:
    """Articles in the index, opened (and so checked) as the service opens it."""
    store = Store.open(index)
    try:
        return store.manifest().articles
    finally:
        store.close()


@pytest.mark.slow
def test_kill_9_during_qa_index_then_resume(tmp_path, default_model_dir):
    """The real command: kill `qa index` once part of a file is committed, restart it, and it indexes only the
    rest; the index is complete and answers."""
    # 600 one-passage articles: `qa index` commits them in three batches (one every 256 passages), and encoding the
    # second batch leaves seconds in which part of the file is committed and part is not.
    bulk, seeds = 600, sum(1 for _ in read_articles([REPO / "seeds"]))
    articles = tmp_path / "many.jsonl"
    _bulk_file(articles, bulk)
    env = {
        **os.environ,
        "QA_DATA_DIR": str(tmp_path / "data"),
        "QA_MODELS_DIR": str(default_model_dir.parent),
        "QA_SEEDS": str(REPO / "seeds"),
    }
    index = tmp_path / "data" / "default"
    qa = [sys.executable, "-m", "qa.cli"]
    with (tmp_path / "index.log").open("wb") as log:
        proc = subprocess.Popen([*qa, "index", str(articles)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        # The event to kill at: the first commit of the file (seeds first, then the file in batches).
        wait_for(
            lambda: _manifest_articles(index) > seeds, what="qa index committing", alive=lambda: proc.poll() is None
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    partial = check_articles(index)
    assert seeds < partial < seeds + bulk, f"{partial} articles: the kill did not land between two commits"

    done = subprocess.run([*qa, "index", str(articles)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"indexed {seeds + bulk - partial} articles" in done.stdout, done.stdout  # only what was not committed
    assert check_articles(index) == seeds + bulk
    ask = subprocess.run(
        [*qa, "ask", "Quận Nam Từ Liêm có bao nhiêu đảng viên?", "-k", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ask.returncode == 0 and "10.254" in ask.stdout, ask.stdout + ask.stderr
