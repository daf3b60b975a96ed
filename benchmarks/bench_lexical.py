"""The lexical engine in-process on the 100k-passage index `bench_query` builds: top-100 latency, size on disk, open
and rebuild time.

Per question (the 200 of `bench_query`, as typed and without tone marks): `Store.search_lexical(query, 100)`, the
call the retriever makes, timed one question at a time after one warm-up pass. The index folder is copied aside to
time a rebuild from the database (a stale index) without touching bench_query's. The figures this engine replaced
(the hand-written numpy BM25 and its pickle snapshot) are in benchmarks/README.md beside these.

Run after `bench_query` (it builds the index): `.venv/bin/python -m benchmarks.bench_lexical` (part of `make bench`).
"""

from __future__ import annotations

import logging
import shutil
import sys
import time

from benchmarks.common import WORK, percentiles, questions, save, timed
from qa.config import INDEX_NAME
from qa.query import Query
from qa.store import LEXICAL_DIR, Store
from qa.text import strip_accents

log = logging.getLogger("bench.lexical")
TOP = 100


def folder_bytes(path) -> int:  # type: ignore[no-untyped-def]
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    index_dir = WORK / "query" / INDEX_NAME
    if not (index_dir / "store.sqlite").is_file():
        sys.exit(f"no index at {index_dir}: run `python -m benchmarks.bench_query` first")
    started = time.perf_counter()
    store = Store.open(index_dir)
    open_s = time.perf_counter() - started
    passages = store.manifest().passages
    asked = [Query.parse(q) for q in questions(200)]
    folded = [Query.parse(strip_accents(q.text)) for q in asked]
    for query in asked + folded:  # warm: the segments' pages in the page cache, as on a serving replica
        store.search_lexical(query, TOP)
    accented_s = [timed(lambda q=q: store.search_lexical(q, TOP)) for q in asked]
    folded_s = [timed(lambda q=q: store.search_lexical(q, TOP)) for q in folded]
    store.close()

    stale = WORK / "lexical-stale"
    shutil.rmtree(stale, ignore_errors=True)
    shutil.copytree(index_dir, stale)
    shutil.rmtree(stale / LEXICAL_DIR)
    started = time.perf_counter()
    Store.open(stale).close()  # rebuilds the lexical index from the database
    rebuild_s = time.perf_counter() - started
    shutil.rmtree(stale, ignore_errors=True)

    results = {
        "passages": passages,
        "top": TOP,
        "open_current_s": round(open_s, 3),
        "rebuild_from_database_s": round(rebuild_s, 1),
        "on_disk_bytes": folder_bytes(index_dir / LEXICAL_DIR),
        "on_disk_bytes_per_passage": round(folder_bytes(index_dir / LEXICAL_DIR) / max(passages, 1), 1),
        "accented": percentiles(accented_s),
        "without_tone_marks": percentiles(folded_s),
    }
    log.info("%s", results)
    print(save("lexical", results))


if __name__ == "__main__":
    main()
