"""Publication-date filters through a real server: what each bound selects on the seeds, what is refused and why,
and the schema that tells clients (and schemathesis) which strings are dates.

The seeds' dates (Vietnam time): 004 2019-04-11 16:37, 001 2020-06-14 19:43, 000 2020-07-09 14:02,
003 2021-01-15 11:53; 002 has none, so no date filter ever selects it.
"""

from __future__ import annotations

import re

import httpx
import pytest

from qa.client import BadRequest, Client
from qa.dates import EXPECTED, PATTERN

QUESTION = "Đảng bộ Hà Nội"
A2019_04_11, A2020_06_14, A2020_07_09, A2021_01_15 = (
    "004_883b030afed6ad88",
    "001_664a696c625e304a",
    "000_bfda8b1290abb0d5",
    "003_0b6753d6958e9fca",
)
DATED = {A2019_04_11, A2020_06_14, A2020_07_09, A2021_01_15}


def _selected(base_url: str, filters: dict) -> set[str]:
    body = {"question": QUESTION, "top_k": 50, "one_per_article": True, "filters": filters}
    r = httpx.post(f"{base_url}/v1/ask", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return {hit["article"]["id"] for hit in r.json()["hits"]}


@pytest.mark.parametrize(
    ("published_from", "published_to", "expected"),
    [
        (None, None, DATED | {"002_793d685470df229a"}),
        ("2020", None, {A2020_06_14, A2020_07_09, A2021_01_15}),
        (None, "2020", {A2019_04_11, A2020_06_14, A2020_07_09}),  # the whole of 2020, to its last instant
        ("2020", "2020", {A2020_06_14, A2020_07_09}),
        ("2020-07", "2020-07", {A2020_07_09}),
        ("2020-06", "2020-07", {A2020_06_14, A2020_07_09}),
        ("2020-06-14", "2020-06-14", {A2020_06_14}),  # published_to a day: that day's 19:43 is in
        (None, "2019-04-11", {A2019_04_11}),
        (None, "2019-04-10", set()),
        ("2019-04-12", "2020-06-13", set()),
        ("2021-02", None, set()),
        # Date-times are instants: the bounds are inclusive to the minute, offsets are converted.
        ("2020-06-14T19:43", "2020-07-09T14:02", {A2020_06_14, A2020_07_09}),
        ("2020-06-14T19:44", "2020-07-09T14:01", set()),
        ("2019-04-11T09:37:00Z", "2019-04-11T09:37Z", {A2019_04_11}),
        ("2021-01-15T04:53:00+00:00", None, {A2021_01_15}),
        ("2021-01-15T04:54Z", None, set()),
        (None, "2021-01-15T11:52:59.999999+07:00", {A2019_04_11, A2020_06_14, A2020_07_09}),
        ("2021-01-15 11:53", "2021-01-15 11:53", {A2021_01_15}),
    ],
)
def test_a_bound_selects_its_whole_period(base_url, published_from, published_to, expected):
    filters = {k: v for k, v in (("published_from", published_from), ("published_to", published_to)) if v}
    assert _selected(base_url, filters) == expected


def test_the_batch_endpoint_reads_dates_the_same_way(client):
    batch = client.ask_batch([QUESTION, "Hà Nội"], top_k=50, filters={"published_from": "2020", "published_to": "2020"})
    for result in batch.results:
        assert {h.article.id for h in result.hits} == {A2020_06_14, A2020_07_09}


BAD_TEXT = [
    "0",
    "",
    "yesterday",
    "2020-13",
    "2020-02-30",
    "2021-02-29",
    "20200101",
    "2020-5-3",
    "03/05/2020",
    " 2020",
    "2020-05-03T25:00",
    "2020-05-03T10:00+7",
]


@pytest.mark.parametrize("field", ["published_from", "published_to"])
@pytest.mark.parametrize("value", BAD_TEXT)
def test_text_that_is_not_a_date_is_a_422_saying_what_was_expected(base_url, field, value):
    r = httpx.post(f"{base_url}/v1/ask", json={"question": QUESTION, "filters": {field: value}})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"] == f"filters.{field}: expected {EXPECTED}; got {value!r}"


@pytest.mark.parametrize("value", [2020, 0, 1586597820, 1.5, True, False, ["2020"], {"year": 2020}])
def test_a_date_that_is_not_text_is_a_422(base_url, value):
    # A number is not read as a Unix timestamp: the rule is text, and the message says so.
    for path, body in (("/v1/ask", {"question": QUESTION}), ("/v1/ask/batch", {"questions": [QUESTION]})):
        r = httpx.post(f"{base_url}{path}", json={**body, "filters": {"published_from": value}})
        assert r.status_code == 422, r.text
        message = r.json()["error"]["message"]
        assert message.startswith(f"filters.published_from: expected a string holding {EXPECTED}; got ")


@pytest.mark.parametrize(
    ("published_from", "published_to"),
    [
        ("2021", "2020"),
        ("2020-05-04", "2020-05-03"),
        ("2020-05-03T10:00:00+07:00", "2020-05-03T02:59Z"),  # 09:59 in Vietnam: an instant before the start
        ("2020-05-03T10:01", "2020-05-03T10:00"),
    ],
)
def test_from_after_to_is_a_422(base_url, published_from, published_to):
    filters = {"published_from": published_from, "published_to": published_to}
    r = httpx.post(f"{base_url}/v1/ask", json={"question": QUESTION, "filters": filters})
    assert r.status_code == 422
    assert re.fullmatch(r"filters: published_from \(.+\) is after published_to \(.+\)", r.json()["error"]["message"])


def test_bounds_on_the_same_instant_in_two_offsets_are_a_range(base_url):
    filters = {"published_from": "2019-04-11T16:37:00+07:00", "published_to": "2019-04-11T09:37Z"}
    assert _selected(base_url, filters) == {A2019_04_11}


@pytest.mark.parametrize(
    "filters",
    [
        {"published_from": "0"},
        {"published_to": "2020-02-30"},
        {"published_from": 7},
        {"published_from": "2021", "published_to": "2020"},
    ],
)
def test_the_client_refuses_locally_what_the_server_refuses_with_the_same_error(base_url, filters):
    raw = httpx.post(f"{base_url}/v1/ask", json={"question": QUESTION, "filters": filters}).json()["error"]
    with Client(base_url) as qa, pytest.raises(BadRequest) as caught:
        qa.ask(QUESTION, filters=filters)
    assert (caught.value.code, caught.value.message, caught.value.detail) == (
        raw["code"],
        raw["message"],
        raw["detail"],
    )


def test_openapi_publishes_the_accepted_shapes(base_url):
    schema = httpx.get(f"{base_url}/openapi.json").json()
    filters = next(v for k, v in schema["components"]["schemas"].items() if k.startswith("Filters"))
    for field in ("published_from", "published_to"):
        prop = filters["properties"][field]
        [text] = [s for s in prop["anyOf"] if s.get("type") == "string"]
        assert text == {"type": "string", "pattern": PATTERN}
        assert "format" not in text  # "date-time" would tell generators a year alone is invalid
        assert "2020-05" in prop["description"] and "Vietnam time" in prop["description"]
        for accepted in prop["examples"]:
            assert re.search(text["pattern"], accepted)
            assert _selected(base_url, {field: accepted}) is not None
        for refused in BAD_TEXT:
            assert not re.search(text["pattern"], refused)
