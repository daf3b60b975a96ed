"""Term statistics for a lexical engine whose per-term counts a client cannot read (Milvus BM25): how many passages
hold each word and each pair of words, kept in the database (`qa.database.term_stats`) and moved in each write's
own transaction. `TERMS_VERSION` names what is counted: a collection filled when fewer things were counted is filled
again (`qa.storage.indexes`), so that every replica reads complete counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from qa import database as db
from qa.lexical.analysis import passage_terms
from qa.storage.records import rows_in

if TYPE_CHECKING:
    from qa.storage.writes import Change

# The `term_stats` row that counts the passages (BM25's N).
ALL_PASSAGES = ("", "")
# Bump when `term_counts` counts something more: 2 added the accented pairs ("phrases").
TERMS_VERSION = 2


def term_counts(texts: Iterable[str]) -> Counter[tuple[str, str]]:
    """(field, term) → passages holding it, over `texts` (as the lexical index reads passages): the accented and
    accent-free syllables, and the accented pairs ("phrases", which tone-mark restoration reads: `qa.restore`)."""
    counts: Counter[tuple[str, str]] = Counter()
    for text in texts:
        terms = passage_terms(text)
        counts.update(("syllables", term) for term in set(terms.syllables))
        counts.update(("phrases", term) for term in set(terms.phrases))
        counts.update(("folded", term) for term in set(terms.folded) if "_" not in term)
    return counts


def _add(conn: sa.Connection, counts: Counter[tuple[str, str]]) -> None:
    rows = [{"field": f, "term": t, "docs": n} for (f, t), n in sorted(counts.items()) if n]
    db.add_counts(conn, db.term_stats, rows, "docs")


class TermStats:
    """The database's per-term passage counts (`qa.lexical.TermStats`): read by the lexical engine, moved by every
    write (a participant of `qa.storage.writes`), recounted when the engine's collection is filled."""

    reads_removed_text = True  # a write hands over the text of the passages it removes

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def n_docs(self) -> int:
        """How many passages the index holds."""
        return self.doc_freqs(ALL_PASSAGES[0], [ALL_PASSAGES[1]])[0]

    def doc_freqs(self, field: str, terms: Sequence[str]) -> list[int]:
        """How many passages hold each of `terms` in `field` ("syllables", "phrases", or "folded" unigrams)."""
        if not terms:
            return []
        table = db.term_stats.c
        query = sa.select(table.term, table.docs).where(table.field == field)
        with self.engine.connect() as conn:
            found = dict(rows_in(conn, query, table.term, list(dict.fromkeys(terms))))
        return [int(found.get(term, 0)) for term in terms]

    def before_commit(self, conn: sa.Connection, change: Change) -> None:
        """Move the counts by a write's passages, in its transaction."""
        counts = term_counts(row.text for row in change.added)
        counts.subtract(term_counts(row.text for row in change.removed_rows))
        counts[ALL_PASSAGES] += len(change.added) - len(change.removed)
        _add(conn, counts)

    def after_commit(self, change: Change) -> None:
        pass

    def replace(self, conn: sa.Connection, counts: Counter[tuple[str, str]], total: int) -> None:
        """Replace the counts by `counts` (`term_counts`) over `total` passages, every stored one (a fill)."""
        conn.execute(sa.delete(db.term_stats))
        _add(conn, Counter({**counts, ALL_PASSAGES: total}))
