"""Liveness, readiness (503 while loading) and stats, through the real server and both clients."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest

from qa.api import create_app
from qa.client import AsyncClient, Client, NotFoundError, ServiceUnavailable
from qa.schemas import Health, Stats
from qa.service import Service
from tests.api.conftest import live_server


def test_health_ready_stats(client):
    assert client.health() == Health(status="ok")
    assert client.ready() == Health(status="ready")
    stats = client.stats()
    assert isinstance(stats, Stats)
    assert stats.articles == 5 and stats.passages > 5 and stats.dim == 384
    assert stats.sentence_vectors, "the seeds are indexed with sentence vectors by default"
    assert stats.model and stats.index_kind and stats.created_at and stats.updated_at and stats.version


@pytest.mark.anyio
async def test_async_health_ready_stats(base_url):
    async with AsyncClient(base_url) as qa:
        assert (await qa.health()).status == "ok"
        assert (await qa.ready()).status == "ready"
        assert (await qa.stats()).articles == 5


def test_not_ready_until_loaded(service, monkeypatch):
    """A server whose service is still loading: up (healthz) but 503 everywhere else, then ready."""
    release = threading.Event()

    class Borrowed(Service):
        def close(self) -> None:  # the session's service outlives this server
            pass

    def slow_load(settings, **_):
        assert release.wait(30)
        return Borrowed(**{f.name: getattr(service, f.name) for f in dataclasses.fields(service)})

    monkeypatch.setattr(Service, "load", staticmethod(slow_load))
    # retries=0: each 503 at once, rather than after the two retries its Retry-After invites.
    with live_server(create_app(service.settings), wait_ready=False) as url, Client(url, retries=0) as qa:
        assert qa.health().status == "ok"
        for call in (qa.ready, qa.stats, qa.list_articles, lambda: qa.ask("Cầu Giấy"), lambda: qa.get_article("x")):
            with pytest.raises(ServiceUnavailable, match="still loading") as caught:
                call()
            assert caught.value.status == 503 and caught.value.code == "not_ready"
        asyncio.run(_async_not_ready(url))
        release.set()
        for _ in range(100):
            try:
                qa.ready()
                break
            except ServiceUnavailable:
                threading.Event().wait(0.05)
        assert qa.stats().articles == 5
        with pytest.raises(NotFoundError):
            qa.get_article("x")


async def _async_not_ready(url: str) -> None:
    async with AsyncClient(url, retries=0) as qa:
        assert (await qa.health()).status == "ok"
        with pytest.raises(ServiceUnavailable, match="still loading"):
            await qa.ready()
        with pytest.raises(ServiceUnavailable):
            await qa.ask_batch(["Cầu Giấy"])


def test_failed_load_stays_503_with_the_reason(service, monkeypatch):
    def broken_load(settings, **_):
        raise RuntimeError("no index here")

    monkeypatch.setattr(Service, "load", staticmethod(broken_load))
    with live_server(create_app(service.settings), wait_ready=False) as url, Client(url, retries=0) as qa:
        for _ in range(100):
            try:
                qa.ready()
            except ServiceUnavailable as exc:
                if "failed" in exc.message:
                    assert "no index here" in exc.message
                    return
            threading.Event().wait(0.05)
    pytest.fail("the failure never showed in /readyz")
