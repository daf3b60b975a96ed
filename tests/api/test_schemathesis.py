"""Property-based API testing with schemathesis against the OpenAPI document of a real server.

Bounded (30 examples per operation and mode, the same ones on every run; fifty times as many, fresh, under
`make fuzz`); asserts no 5xx and no response that breaks the schema. It writes (POST/DELETE articles), so it runs
against its own small index, not the session's.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from qa.api import create_app
from qa.config import Settings
from qa.service import Service
from tests.api.conftest import API_KEY
from tests.conftest import REPO_ROOT, examples
from tests.servers import live_server

# `hypothesis`: the tests drive a strategy from inside, so hypothesis' plugin cannot mark them for `make fuzz`.
pytestmark = [pytest.mark.slow, pytest.mark.hypothesis]


@pytest.fixture(scope="module")
def fuzz_url(encoder, default_model_dir, tmp_path_factory) -> Iterator[str]:
    seeds = tmp_path_factory.mktemp("seeds")
    for path in sorted((REPO_ROOT / "seeds").glob("*.txt"))[:2]:
        shutil.copy(path, seeds)
    settings = Settings(data_dir=tmp_path_factory.mktemp("fuzz-data"), models_dir=default_model_dir.parent, seeds=seeds)
    service = Service.load(settings, encoder=encoder)
    guarded = settings.model_copy(update={"api_key": SecretStr(API_KEY)})  # so the auth checks have work
    try:
        with live_server(create_app(guarded, service=service)) as url:
            yield url
    finally:
        service.close()


@pytest.fixture(scope="module")
def api_schema(fuzz_url: str):
    return schemathesis.openapi.from_url(f"{fuzz_url}/openapi.json")


def _cases() -> list[tuple[str, str, GenerationMode]]:
    """Every operation with valid data, and those that take input with invalid data too."""
    paths = create_app(Settings()).openapi()["paths"]
    cases = []
    for path, item in paths.items():
        for method, operation in item.items():
            cases.append((method.upper(), path, GenerationMode.POSITIVE))
            # A string path parameter cannot be made schema-invalid: negative data only where input has types.
            if operation.get("requestBody") or any(p["in"] == "query" for p in operation.get("parameters", [])):
                cases.append((method.upper(), path, GenerationMode.NEGATIVE))
    return cases


# schemathesis' own pytest integration (`from_fixture`) trips over this pytest version's subtests, so each
# operation and generation mode is its own test driving a Hypothesis strategy.
@pytest.mark.parametrize(("method", "path", "mode"), _cases(), ids=lambda x: getattr(x, "value", x))
def test_api_conforms_to_its_schema(api_schema, method: str, path: str, mode: GenerationMode):
    operation = api_schema[path][method]

    # Seed, database and deadline come from the loaded profile (tests/conftest.py).
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples(30), suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        # Some rules are beyond JSON Schema (a question blank after trimming, a date that must parse, ids
        # distinct within a request): schema-valid input may still get a 422, so that check is off.
        response = case.call_and_validate(
            headers={"Authorization": f"Bearer {API_KEY}"}, excluded_checks=[positive_data_acceptance]
        )
        assert response.status_code < 500

    # One seed (derandomised) and one database key per operation and mode, as schemathesis' own runner keys them:
    # without it every parameter set would share the inner function's.
    inner = check.hypothesis.inner_test  # type: ignore[attr-defined]
    inner._hypothesis_internal_add_digest = f"{operation.label} {mode.value}".encode()
    check()


# Failures `make fuzz` found, kept as explicit cases so that `make test` checks them on every run.


def test_a_question_longer_than_the_schema_allows_is_rejected(fuzz_url: str):
    # Found by `make fuzz`. The schema's maxLength is of the question as sent: with the whitespace around it, this
    # one is 2001 long.
    r = httpx.post(f"{fuzz_url}/v1/ask", json={"question": "\f" + "x" * 2000})
    assert r.status_code == 422, r.text
