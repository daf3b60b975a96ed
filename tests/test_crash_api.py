"""kill -9 of a real `qa serve` in the middle of `POST /v1/articles`: after a restart the index holds the old
request or the new one (never part of one, never a mix of versions), loads, and answers.

tests/test_crash.py does the same for the store's writer and for `qa index`.
"""

from __future__ import annotations

import random
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from qa.store import Store
from tests.conftest import REPO_ROOT
from tests.servers import start_qa_serve

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


def check_index(path: Path) -> int | None:
    """Every invariant a reader relies on; returns the one version all crash articles share (None: none yet)."""
    store = Store.open(path)
    try:
        assert store.manifest().passages == store.index.ntotal
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
    env = {"QA_DATA_DIR": str(data), "QA_MODELS_DIR": str(default_model_dir.parent), "QA_SEEDS": str(seeds)}
    rng = random.Random(20261122)
    trials, committed, version = 4, [], 0
    proc, url = start_qa_serve(env, log)
    try:
        for _ in range(trials):
            stop = threading.Event()
            acks = threading.Semaphore(0)
            acked: list[int] = []
            failures: list[str] = []

            def write(
                url: str = url,
                stop: threading.Event = stop,
                acks: threading.Semaphore = acks,
                acked: list[int] = acked,
                failures: list[str] = failures,
            ) -> None:
                nonlocal version
                while not stop.is_set():
                    version += 1
                    try:
                        r = httpx.post(f"{url}/v1/articles", json=request_body(version), timeout=120)
                    except httpx.TransportError:
                        return  # killed mid-request, or before the next one was sent
                    if r.status_code != 200:
                        failures.append(r.text)
                    else:
                        acked.append(version)
                    acks.release()
                    if failures:
                        return

            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            # Kill after a seeded number of acknowledged requests, then a seeded moment into the next one (a request
            # takes seconds): the kill lands inside it or between two, and the assertions hold either way.
            for _ in range(rng.randint(1, 2)):
                assert acks.acquire(timeout=300), "no request was acknowledged"
                assert not failures, failures
            time.sleep(rng.uniform(0.0, 3.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            stop.set()
            writer.join(timeout=130)
            assert not writer.is_alive() and not failures, failures

            found = check_index(data / "default")
            # The old state or the new one: the last acknowledged request, or the one in flight.
            assert found in {acked[-1], version}, (found, acked[-1], version)
            committed.append(found)

            proc, url = start_qa_serve(env, log)
            r = httpx.post(f"{url}/v1/ask", json={"question": "Cầu Nhật Tân dài bao nhiêu mét?", "top_k": 3})
            assert r.status_code == 200 and r.json()["hits"], r.text
            assert r.json()["hits"][0]["article"]["id"] in IDS
            title = httpx.get(f"{url}/v1/articles/{IDS[0]}").json()["title"]
            assert title.endswith(f"phiên bản {found}")
        print(f"\nkill -9 during POST: {trials} trials, versions after restart {committed}, last sent {version}")
    finally:
        proc.kill()
        proc.wait(timeout=30)
