"""The one place that runs corpus → chunking → encoders → store, for seeds, files and API writes alike."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from qa.chunking import CHUNKING, chunk_article
from qa.config import Settings
from qa.corpus import read_articles
from qa.database import is_embedded
from qa.domain import Article, Passage, encoder_input, sentence_inputs
from qa.encoders import Encoder
from qa.store import IndexExistsError, NoIndexError, Store, StoreError

log = logging.getLogger(__name__)

SEED = "seed"
API = "api"
FILE = "file"


WriteStatus = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True, slots=True)
class IndexReport:
    added: int
    updated: int
    unchanged: int
    removed: int
    passages: int
    seconds: float


class Indexer:
    """Chunks, encodes and stores articles; each call's articles land in the store in one transaction per batch."""

    def __init__(
        self,
        store: Store,
        encoder: Encoder,
        *,
        chunking: dict[str, int],
        batch_size: int = 32,  # passages a forward pass (sentence-transformers' own default)
        sentence_vectors: bool = True,
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.chunking = chunking
        self.batch_size = batch_size
        # Also encode every sentence of every passage (about as many tokens again as the passages): the
        # retriever ranks by the best sentence as well and highlights without encoding at question time.
        self.sentence_vectors = sentence_vectors

    @classmethod
    def from_settings(cls, store: Store, encoder: Encoder, settings: Settings) -> Indexer:
        """The indexer the service runs: the service's chunking, sentence vectors as configured."""
        return cls(store, encoder, chunking=CHUNKING, sentence_vectors=settings.sentence_vectors)

    def chunk(self, article: Article) -> list[Passage]:
        return chunk_article(article, **self.chunking)

    def add(
        self, articles: Iterable[Article], *, origin: str, progress: bool = False, commit_every: int = 256
    ) -> dict[str, int]:
        """Insert or replace articles; returns article id → passage count.

        Work is committed every `commit_every` passages so a crash or ^C loses at most one batch.
        """
        counts: dict[str, int] = {}
        pending: list[tuple[Article, list[Passage]]] = []
        pending_passages = 0
        bar = tqdm(desc="indexing", unit="passage", disable=not progress)
        try:
            for article in articles:
                passages = self.chunk(article)
                pending.append((article, passages))
                pending_passages += len(passages)
                if pending_passages >= commit_every:
                    counts.update(self._commit(pending, origin, bar))
                    pending, pending_passages = [], 0
            counts.update(self._commit(pending, origin, bar))
        finally:
            bar.close()
        return counts

    def _commit(self, pending: Sequence[tuple[Article, list[Passage]]], origin: str, bar: tqdm) -> dict[str, int]:
        if not pending:
            return {}
        texts = [encoder_input(a.title, p.text) for a, passages in pending for p in passages]
        n_passages = len(texts)
        if self.sentence_vectors:
            texts += [s for a, passages in pending for p in passages for s in sentence_inputs(a.title, p)]
            texts += [a.title for a, _ in pending]
        vectors = self._encode(texts, n_passages, bar)
        items, sentences, offset, row = [], [], 0, n_passages
        for article, passages in pending:
            items.append((article, passages, vectors[offset : offset + len(passages)]))
            offset += len(passages)
            per_passage = []
            for p in passages:
                per_passage.append(vectors[row : row + len(p.sentences)])
                row += len(p.sentences)
            sentences.append(per_passage)
        if not self.sentence_vectors:
            self.store.upsert(items, origin=origin)
        else:
            titles = list(vectors[row : row + len(pending)])
            self.store.upsert(items, origin=origin, sentence_vectors=sentences, title_vectors=titles)
        return {a.id: len(p) for a, p in pending}

    def _encode(self, texts: list[str], n_passages: int, bar: tqdm) -> np.ndarray:
        """A vector for each of `texts`. A text repeated is encoded once (consecutive passages share a sentence);
        the distinct ones go in batches of similar length (they pad least), moving the progress bar, which counts
        passages: a text advances it by the share of the work it is."""
        distinct = list(dict.fromkeys(texts))
        order = sorted(range(len(distinct)), key=lambda i: len(distinct[i]), reverse=True)
        vectors = np.zeros((len(distinct), self.encoder.dim), dtype=np.float32)
        first, done = bar.n, 0.0
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            vectors[batch] = self.encoder.encode_passages([distinct[i] for i in batch], batch_size=self.batch_size)
            done += len(batch) * n_passages / len(distinct)
            bar.update(first + int(done) - bar.n)
        bar.update(first + n_passages - bar.n)
        row = {text: i for i, text in enumerate(distinct)}
        return vectors[[row[t] for t in texts]]

    def statuses(self, articles: Sequence[Article]) -> dict[str, WriteStatus]:
        """What writing each of `articles` would do, by id: "created" (not stored), "updated" (stored with another
        fingerprint) or "unchanged" (stored with the same: indexing it again would change nothing)."""
        known = self.store.fingerprints(ids=[a.id for a in articles])
        return {
            a.id: "created" if a.id not in known else "updated" if a.differs_from(known) else "unchanged"
            for a in articles
        }

    def delete(self, article_ids: Iterable[str]) -> int:
        return self.store.delete(article_ids)

    def sync(self, articles: Iterable[Article], *, origin: str, progress: bool = False) -> IndexReport:
        """Make the store's articles of `origin` equal `articles`: add new, replace changed, drop missing."""
        started = time.perf_counter()
        known = self.store.fingerprints(origin)
        wanted = {a.id: a for a in articles}
        changed = [a for a in wanted.values() if a.differs_from(known)]
        gone = [i for i in known if i not in wanted]
        counts = self.add(changed, origin=origin, progress=progress)
        removed = self.delete(gone) if gone else 0
        return IndexReport(
            added=sum(1 for a in changed if a.id not in known),
            updated=sum(1 for a in changed if a.id in known),
            unchanged=len(wanted) - len(changed),
            removed=removed,
            passages=sum(counts.values()),
            seconds=time.perf_counter() - started,
        )


def corpus_fingerprint(articles: Iterable[Article]) -> str:
    digest = hashlib.sha256()
    for article in sorted(articles, key=lambda a: a.id):
        digest.update(f"{article.id}\0{article.fingerprint}\n".encode())
    return digest.hexdigest()


def stale_reason(store: Store, encoder: Encoder, chunking: dict[str, int]) -> str | None:
    """Why vectors in `store` can't be reused with this model and chunking, or None if they can."""
    manifest = store.manifest()
    if manifest.model != encoder.name or manifest.dim != encoder.dim:
        return f"built with model {manifest.model!r} (dim {manifest.dim}), configured {encoder.name!r}"
    if manifest.chunking != chunking:
        return f"built with chunking {manifest.chunking}, configured {chunking}"
    return None


def _swap_in(built: Path, target: Path) -> None:
    """Replace `target` by `built`; the old folder is kept aside until the new one is in place."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(built, target)
    shutil.rmtree(old, ignore_errors=True)


def recover_interrupted_swap(target: Path) -> None:
    """A crash between the two renames of `_swap_in` leaves only `.NAME.old-PID`: put it back."""
    if target.exists():
        return
    leftovers = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if leftovers:
        log.warning("restoring %s from %s (a rebuild was interrupted)", target, leftovers[-1])
        os.replace(leftovers[-1], target)


def rebuild(settings: Settings, encoder: Encoder, *, previous: Store | None, progress: bool) -> Store:
    """Build a complete new index aside (re-embedding every article the old one held), then swap it in."""
    target = settings.index_dir
    target.parent.mkdir(parents=True, exist_ok=True)
    building = target.with_name(f".{target.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    store = Store.create(building, model=encoder.name, dim=encoder.dim, chunking=CHUNKING, **settings.store_options)
    try:
        indexer = Indexer.from_settings(store, encoder, settings)
        if previous is not None:
            for origin, ids in previous.ids_by_origin().items():
                articles = (a for i in ids if (a := previous.article(i)) is not None)
                indexer.add(articles, origin=origin, progress=progress)
            previous.close()
        store.close()
    except BaseException:
        store.close()
        shutil.rmtree(building, ignore_errors=True)
        raise
    _swap_in(building, target)
    return Store.open(target, **settings.store_options)


def create_in_server(settings: Settings, encoder: Encoder) -> Store:
    """The first index in a database server (`QA_DATABASE_URL`): nothing to keep, so nothing is built aside; the
    index folder holds only what is derived from the database, and starts empty."""
    shutil.rmtree(settings.index_dir, ignore_errors=True)
    try:
        return Store.create(
            settings.index_dir,
            model=encoder.name,
            dim=encoder.dim,
            chunking=CHUNKING,
            **settings.store_options,
        )
    except IndexExistsError:  # another replica, starting at the same time, created it first
        shutil.rmtree(settings.index_dir, ignore_errors=True)
        return Store.open(settings.index_dir, **settings.store_options)


def add_missing_titles(store: Store, encoder: Encoder, *, batch: int = 256, progress: bool = False) -> int:
    """Encode the titles of the articles indexed without a title vector (by a version before titles had them),
    so an index gains them at its next open without re-embedding anything else; returns how many."""
    missing = store.titles_without_vectors()
    if missing:
        log.info("encoding %d article titles the index lacks", len(missing))
    bar = tqdm(total=len(missing), desc="titles", unit="title", disable=not progress or not missing)
    for start in range(0, len(missing), batch):
        part = missing[start : start + batch]
        vectors = encoder.encode_passages([title for _, title in part], batch_size=batch)
        store.add_title_vectors({article_id: v for (article_id, _), v in zip(part, vectors, strict=True)})
        bar.update(len(part))
    bar.close()
    return len(missing)


def open_index(settings: Settings, encoder: Encoder, *, force_rebuild: bool = False, progress: bool = False) -> Store:
    """Open the configured index, rebuilding it when missing or stale and syncing it with the seeds.

    An unreadable index is an error, never silently replaced (articles added through the API live only there),
    unless a rebuild was asked for.
    """
    target = settings.index_dir
    embedded = is_embedded(settings.database_url)
    recover_interrupted_swap(target)
    previous: Store | None = None
    reason: str | None = "no index yet"
    if target.exists() or not embedded:  # a database server may hold an index that this folder has never seen
        try:
            previous = Store.open(target, **settings.store_options)
        except NoIndexError:
            if embedded and not force_rebuild:
                raise
        except StoreError as exc:
            if not force_rebuild:
                raise
            log.warning("index %s cannot be read (%s): building a new one", target, exc)
            reason = "unreadable index"
        else:
            reason = "--rebuild asked" if force_rebuild else stale_reason(previous, encoder, CHUNKING)
    if reason:
        log.info("building index %s: %s", target, reason)
        if embedded:
            store = rebuild(settings, encoder, previous=previous, progress=progress)
        elif previous is None and reason == "no index yet":
            store = create_in_server(settings, encoder)
        else:
            if previous is not None:
                previous.close()
            raise StoreError(
                f"index at {target} (QA_DATABASE_URL) needs a rebuild ({reason}), which this version does only for "
                "the embedded SQLite database: build it embedded, or empty the database and start again"
            )
    else:
        assert previous is not None
        store = previous
    sync_seeds(settings, store, encoder, progress=progress)
    if settings.sentence_vectors:
        add_missing_titles(store, encoder, progress=progress)
    if settings.sentence_vectors and store.manifest().passages and not store.has_sentence_vectors():
        log.warning(
            "index %s lacks sentence or title vectors (built by an older version, or with "
            "QA_SENTENCE_VECTORS=false): ranking may go without the best-sentence signal, answers without the titles' "
            "cosine, and the top hit's sentences are encoded at question time; `qa index --rebuild` adds them",
            target,
        )
    return store


def sync_seeds(settings: Settings, store: Store, encoder: Encoder, *, progress: bool = False) -> IndexReport | None:
    if not settings.seeds.exists():
        log.warning("seeds folder %s not found: serving only what the index holds", settings.seeds)
        return None
    seeds = list(read_articles([settings.seeds]))
    fingerprint = corpus_fingerprint(seeds)
    if store.manifest().seeds_fingerprint == fingerprint:
        return None
    indexer = Indexer.from_settings(store, encoder, settings)
    report = indexer.sync(seeds, origin=SEED, progress=progress)
    store.set_meta(seeds_fingerprint=fingerprint)
    log.info(
        "seeds synced: %d added, %d updated, %d unchanged, %d removed, %d passages in %.1f s",
        report.added,
        report.updated,
        report.unchanged,
        report.removed,
        report.passages,
        report.seconds,
    )
    return report


__all__ = [
    "API",
    "FILE",
    "SEED",
    "IndexReport",
    "Indexer",
    "StoreError",
    "corpus_fingerprint",
    "open_index",
    "rebuild",
    "sync_seeds",
]
