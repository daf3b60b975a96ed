"""The loaded service: model, index, indexer and retriever, built once per process by the API or the CLI."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from qa.config import Settings
from qa.encoders import Encoder, load_encoder
from qa.indexing import Indexer, open_index
from qa.retriever import Retriever
from qa.store import Store

log = logging.getLogger(__name__)


@dataclass
class Service:
    settings: Settings
    encoder: Encoder
    store: Store
    indexer: Indexer
    retriever: Retriever
    load_seconds: float

    @classmethod
    def load(
        cls,
        settings: Settings,
        *,
        encoder: Encoder | None = None,
        force_rebuild: bool = False,
        progress: bool = False,
    ) -> Service:
        """Load the model (unless given) and open the index, building or syncing it as needed."""
        started = time.perf_counter()
        encoder = encoder or load_encoder(settings)
        store = open_index(settings, encoder, force_rebuild=force_rebuild, progress=progress)
        indexer = Indexer.from_settings(store, encoder, settings)
        seconds = time.perf_counter() - started
        manifest = store.manifest()
        log.info(
            "ready in %.1f s: %d articles, %d passages, model %s",
            seconds,
            manifest.articles,
            manifest.passages,
            manifest.model,
        )
        return cls(settings, encoder, store, indexer, Retriever(store, encoder), seconds)

    def close(self) -> None:
        self.store.close()
