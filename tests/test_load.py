"""Load: 64 concurrent clients ask against a real `qa serve` while a writer replaces and deletes articles.

Promises checked: every answer is a 200, and no hit list mixes two versions of one article. The writer runs a
fixed number of rounds, each waiting until some answer has shown its new version, and the clients ask until it is
done: what is asserted does not depend on how fast the machine is. The figures (requests, errors, p50/p95 latency,
throughput) are printed, and written as JSON to `$QA_LOAD_REPORT` when that is set; benchmarks/load.md keeps the
measured ones. Traffic goes to 127.0.0.1 only, bounded in requests and by a hang guard.

    QA_LOAD_REPORT=/tmp/load.json .venv/bin/pytest tests/test_load.py -m slow -s
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.servers import qa_serve

REPO = Path(__file__).resolve().parents[1]
CLIENTS = 64
ROUNDS = int(os.environ.get("QA_LOAD_ROUNDS", "16"))  # write rounds; the clients ask until the last one is seen
MAX_REQUESTS = 500_000
HANG_GUARD = 900.0  # seconds for the whole asking phase: a stuck server fails the test instead of hanging it
VERSIONED_IDS = ("load-cau-1", "load-cau-2", "load-cau-3")
VERSION = re.compile(r"phiên bản (\d+)")
QUESTIONS = (
    "Cầu Vĩnh Phúc mới dài bao nhiêu mét?",
    "Tổng vốn đầu tư cầu Vĩnh Phúc là bao nhiêu?",
    "Ai chủ trì lễ thông xe cầu Vĩnh Phúc?",
    "Quận Nam Từ Liêm có bao nhiêu đảng viên?",
    "Ai chủ trì cuộc họp Ban chỉ đạo Chương trình 01?",
    "cau Vinh Phuc thong xe khi nao",
)


def versioned_article(article_id: str, version: int) -> dict[str, str]:
    """An article of several passages, each sentence (so each passage) carrying `phiên bản <version>`."""
    n = VERSIONED_IDS.index(article_id) + 1
    sentences = [
        f"Theo phiên bản {version}, đoạn {i} cho biết cầu Vĩnh Phúc số {n} dài {300 + i} mét, rộng {20 + n} mét "
        f"và được xây dựng trong {10 + i} tháng với tổng vốn {1000 + version} tỷ đồng do thành phố Hà Nội đầu tư."
        for i in range(8)
    ]
    return {
        "id": article_id,
        "title": f"Thông xe cầu Vĩnh Phúc số {n}, phiên bản {version}",
        "body": " ".join(sentences),
        "source": "LOADTEST",
    }


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    mixed: list[str] = field(default_factory=list)
    versioned_hits: int = 0
    writes: int = 0
    deletes: int = 0
    write_seconds: list[float] = field(default_factory=list)
    written: int = 0  # the version of the writer's last acknowledged round
    seen_written: asyncio.Event = field(default_factory=asyncio.Event)  # an answer showed that version

    def check(self, body: dict) -> None:
        """No hit list holds passages (or a title) of two versions of one article."""
        seen: dict[str, set[int]] = {}
        for hit in body["hits"]:
            article = hit["article"]
            if article["id"] not in VERSIONED_IDS:
                continue
            self.versioned_hits += 1
            versions = {int(v) for v in VERSION.findall(hit["text"])}
            versions |= {int(v) for v in VERSION.findall(article["title"])}
            seen.setdefault(article["id"], set()).update(versions)
        for article_id, versions in seen.items():
            if len(versions) > 1:
                self.mixed.append(f"{article_id}: versions {sorted(versions)} in one answer to {body['question']!r}")
            if self.written in versions:
                self.seen_written.set()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _asker(client: httpx.AsyncClient, worker: int, done: asyncio.Event, tally: Tally) -> None:
    n = 0
    while not done.is_set() and len(tally.latencies) + len(tally.errors) < MAX_REQUESTS:
        n += 1
        # Mostly new wordings (the question cache would otherwise answer them), some repeats.
        base = QUESTIONS[(worker + n) % len(QUESTIONS)]
        question = base if n % 4 == 0 else f"{base} ({worker}-{n})"
        started = time.perf_counter()
        try:
            r = await client.post("/v1/ask", json={"question": question, "top_k": 10})
        except httpx.HTTPError as exc:
            tally.errors.append(f"{type(exc).__name__}: {exc}")
            continue
        elapsed = time.perf_counter() - started
        if r.status_code != 200:
            tally.errors.append(f"{r.status_code}: {r.text[:300]}")
            continue
        tally.latencies.append(elapsed)
        tally.check(r.json())


async def _writer(client: httpx.AsyncClient, done: asyncio.Event, tally: Tally) -> None:
    """`ROUNDS` times: replace the versioned articles with a new version (and every other round delete one), then
    wait until an answer has shown the new version, so reads and writes interleave however fast each is."""
    try:
        await _write_rounds(client, tally)
    finally:
        done.set()


async def _write_rounds(client: httpx.AsyncClient, tally: Tally) -> None:
    present: set[str] = set()
    for version in range(1, ROUNDS + 1):
        ids = [i for k, i in enumerate(VERSIONED_IDS) if (version + k) % 3 != 0 or i not in present]
        started = time.perf_counter()
        r = await client.post("/v1/articles", json={"articles": [versioned_article(i, version) for i in ids]})
        tally.write_seconds.append(time.perf_counter() - started)
        if r.status_code != 200:
            tally.errors.append(f"write {r.status_code}: {r.text[:300]}")
            continue
        tally.writes += 1
        present.update(ids)
        tally.seen_written.clear()
        tally.written = version
        await tally.seen_written.wait()
        if version % 2 == 0:
            victim = VERSIONED_IDS[version % len(VERSIONED_IDS)]
            r = await client.delete(f"/v1/articles/{victim}")
            if r.status_code != 200:
                tally.errors.append(f"delete {r.status_code}: {r.text[:300]}")
            else:
                tally.deletes += 1
                present.discard(victim)


async def _run(url: str) -> tuple[Tally, float]:
    tally = Tally()
    done = asyncio.Event()
    limits = httpx.Limits(max_connections=CLIENTS + 2, max_keepalive_connections=CLIENTS + 2)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        r = await client.post("/v1/articles", json={"articles": [versioned_article(i, 0) for i in VERSIONED_IDS]})
        assert r.status_code == 200, r.text
        started = time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(
                _writer(client, done, tally),
                *(_asker(client, worker, done, tally) for worker in range(CLIENTS)),
            ),
            HANG_GUARD,
        )
        elapsed = time.monotonic() - started
    return tally, elapsed


@pytest.mark.slow
def test_64_clients_ask_while_articles_change(tmp_path, default_model_dir):
    env = {"QA_DATA_DIR": str(tmp_path / "data"), "QA_MODELS_DIR": str(default_model_dir.parent)}
    with qa_serve({**env, "QA_SEEDS": str(REPO / "seeds")}, tmp_path / "serve.log") as url:
        tally, elapsed = asyncio.run(_run(url))
    requests = len(tally.latencies) + len(tally.errors)
    report = {
        "clients": CLIENTS,
        "seconds": round(elapsed, 1),
        "requests": requests,
        "errors": len(tally.errors),
        "throughput_rps": round(len(tally.latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(tally.latencies) * 1000, 1) if tally.latencies else None,
        "p95_ms": round(percentile(tally.latencies, 0.95) * 1000, 1),
        "p99_ms": round(percentile(tally.latencies, 0.99) * 1000, 1),
        "max_ms": round(max(tally.latencies, default=float("nan")) * 1000, 1),
        "hits_from_changing_articles": tally.versioned_hits,
        "mixed_answers": len(tally.mixed),
        "writes": tally.writes,
        "deletes": tally.deletes,
        "write_p50_ms": round(statistics.median(tally.write_seconds) * 1000, 1) if tally.write_seconds else None,
    }
    print("\nload:", json.dumps(report))
    if os.environ.get("QA_LOAD_REPORT"):
        Path(os.environ["QA_LOAD_REPORT"]).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    assert not tally.errors, f"{len(tally.errors)} errors, first: {tally.errors[:3]}"
    assert not tally.mixed, tally.mixed[:3]
    assert (tally.writes, tally.deletes) == (ROUNDS, ROUNDS // 2)
    assert tally.versioned_hits > 0
