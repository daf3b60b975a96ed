"""kill -9 of a real `qa serve` in the middle of `POST /v1/articles`: after a restart the index holds the old
request or the new one (never part of one, never a mix of versions), loads, and answers.

tests/test_crash.py does the same for the store's writer and for `qa index`.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from qa.store import Store
from tests.conftest import REPO_ROOT
from tests.test_load import _free_port

IDS = [f"crash-{n}" for n in range(6)]
VERSION = re.compile(r"phiên bản (\d+)")


def request_body(version: int) -> dict[str, list[dict[str, str]]]:
    """One request writes every id at `version`: a request is atomic if all ids share one version."""
    articles = []
    for n, article_id in enumerate(IDS):
        sentences = [
            f"Theo phiên bản {version}, đoạn {i} của bài {n} kể về cầu Nhật Tân dài {1000 + i} mét ở Hà Nội."
            for i in range(18)
        ]
        articles.append({"id": article_id, "title": f"Bài {n} phiên bản {version}", "body": " ".join(sentences)})
    return {"articles": articles}


def start(data: Path, models: Path, seeds: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "QA_DATA_DIR": str(data), "QA_MODELS_DIR": str(models), "QA_SEEDS": str(seeds)}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "qa.cli", "serve", "--port", str(port)],
            cwd=REPO_ROOT,
            env={**env, "PYTHONPATH": str(REPO_ROOT)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, "the server did not become ready"
        try:
            r = httpx.get(f"{url}/readyz", timeout=2)
            if r.status_code == 200:
                return proc, url
            assert "failed" not in r.text, r.text  # a failed load after a crash is the bug this test looks for
        except httpx.TransportError:
            pass
        time.sleep(0.2)


def check_index(path: Path) -> int | None:
    """Every invariant a reader relies on; returns the one version all crash articles share (None: none yet)."""
    store = Store.open(path)
    try:
        assert store.manifest().passages == store._index.ntotal
        versions = set()
        for article_id in IDS:
            article = store.article(article_id)
            if article is None:
                versions.add(None)
                continue
            passages = store.passages_of(article_id)
            assert passages and [p.ordinal for p in passages] == list(range(len(passages)))
            found = {int(v) for v in VERSION.findall(article.title)}
            for p in passages:
                assert article.body[p.start : p.end] == p.text
                found |= {int(v) for v in VERSION.findall(p.text)}
            assert len(found) == 1, f"{article_id} mixes versions {sorted(found)}"
            versions |= found
        assert len(versions) == 1, f"one request was half-written: versions {versions}"
        return versions.pop()
    finally:
        store.close()


@pytest.mark.slow
def test_kill_9_during_post_articles(tmp_path, default_model_dir):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    shutil.copy(REPO_ROOT / "seeds" / "004_883b030afed6ad88.txt", seeds)
    data, log = tmp_path / "data", tmp_path / "serve.log"
    rng = random.Random(20261122)
    trials, committed, version = 4, [], 0
    proc, url = start(data, default_model_dir.parent, seeds, log)
    try:
        for _ in range(trials):
            stop = threading.Event()
            acked: list[int] = []

            def write(url: str = url, stop: threading.Event = stop, acked: list[int] = acked) -> None:
                nonlocal version
                while not stop.is_set():
                    version += 1
                    try:
                        r = httpx.post(f"{url}/v1/articles", json=request_body(version), timeout=120)
                    except httpx.TransportError:
                        return  # killed mid-request
                    assert r.status_code == 200, r.text
                    acked.append(version)

            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            time.sleep(rng.uniform(2.0, 9.0))  # a request takes a few seconds: the kill lands inside one
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            stop.set()
            writer.join(timeout=30)

            found = check_index(data / "default")
            # The old state or the new one: the last acknowledged request, or the one in flight.
            last_acked = acked[-1] if acked else (committed[-1] if committed else None)
            assert found in {last_acked, version}, (found, last_acked, version)
            committed.append(found)

            proc, url = start(data, default_model_dir.parent, seeds, log)
            r = httpx.post(f"{url}/v1/ask", json={"question": "Cầu Nhật Tân dài bao nhiêu mét?", "top_k": 3})
            assert r.status_code == 200 and r.json()["hits"], r.text
            if found is not None:
                assert r.json()["hits"][0]["article"]["id"] in IDS
                title = httpx.get(f"{url}/v1/articles/{IDS[0]}").json()["title"]
                assert title.endswith(f"phiên bản {found}")
        print(f"\nkill -9 during POST: {trials} trials, versions after restart {committed}, last sent {version}")
        assert any(v is not None for v in committed), "no write ever committed: the test did not exercise writes"
    finally:
        proc.kill()
        proc.wait(timeout=30)
