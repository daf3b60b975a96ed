"""qa.dates: the periods a filter bound covers, and what it refuses (examples under the conftest profile)."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import date, datetime, time, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from qa.dates import EXPECTED, PATTERN, VIETNAM_TZ, Period, period, period_end, period_start

ONE_MICROSECOND = timedelta(microseconds=1)
# Wide of the store's dates on purpose, but clear of the edges of the calendar, where an offset can leave it.
INSTANTS = st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.none())
OFFSETS = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
DAYS = st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))


def year_month(day: date | datetime) -> str:
    return f"{day.year:04d}-{day.month:02d}"  # strftime("%Y") does not pad years before 1000


def test_imports_only_the_standard_library():
    code = "import sys, qa.dates; assert not {'pydantic', 'httpx', 'numpy'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2020", datetime(2020, 1, 1), datetime(2020, 12, 31, 23, 59, 59, 999999)),
        ("2020-05", datetime(2020, 5, 1), datetime(2020, 5, 31, 23, 59, 59, 999999)),
        ("2020-02", datetime(2020, 2, 1), datetime(2020, 2, 29, 23, 59, 59, 999999)),
        ("2021-02", datetime(2021, 2, 1), datetime(2021, 2, 28, 23, 59, 59, 999999)),
        ("2020-05-03", datetime(2020, 5, 3), datetime(2020, 5, 3, 23, 59, 59, 999999)),
        ("2000-02-29", datetime(2000, 2, 29), datetime(2000, 2, 29, 23, 59, 59, 999999)),
        ("2020-05-03T10:00", datetime(2020, 5, 3, 10), datetime(2020, 5, 3, 10)),
        ("2020-05-03 10:00:30.25", datetime(2020, 5, 3, 10, 0, 30, 250000), datetime(2020, 5, 3, 10, 0, 30, 250000)),
    ],
)
def test_periods_in_vietnam_time(text, start, end):
    assert period(text) == Period(start.replace(tzinfo=VIETNAM_TZ), end.replace(tzinfo=VIETNAM_TZ))
    assert (period_start(text), period_end(text)) == period(text)


@pytest.mark.parametrize(
    "text", ["2020-05-03T10:00:00+07:00", "2020-05-03T03:00Z", "2020-05-03T03:00:00+00:00", "2020-05-02T22:00-05"]
)
def test_a_date_time_with_an_offset_is_that_instant(text):
    ten_in_hanoi = datetime(2020, 5, 3, 10, tzinfo=VIETNAM_TZ)
    assert period_start(text) == period_end(text) == ten_in_hanoi


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "",
        " 2020",
        "2020 ",
        "yesterday",
        "20200101",
        "2020-13",
        "2020-00",
        "2020-5",
        "2020-02-30",
        "2021-02-29",
        "1900-02-29",
        "2020-04-31",
        "0000",
        "12020",
        "2020-05-03T24:00",
        "2020-05-03T10",
        "2020-05-03T10:00:60",
        "2020-05-03T10:00:00.1234567",
        "2020-05-03T10:00+24:00",
        "2020-05-03t10:00",
        "2020-05-03T10:00\n",
        "２０２０",  # full-width digits
        "٢٠٢٠",  # Arabic-Indic digits: int() would take them
    ],
)
def test_rejects_what_is_not_a_date_saying_what_is_expected(text):
    with pytest.raises(ValueError) as caught:
        period(text)
    assert str(caught.value) == f"expected {EXPECTED}; got {text!r}"


@pytest.mark.parametrize("value", [2020, 0, 1.5, True, None, ["2020"]])
def test_rejects_what_is_not_text(value):
    with pytest.raises(ValueError, match=rf"expected a string holding .*; got {re.escape(repr(value))} \("):
        period(value)


def test_an_instant_beyond_the_calendar_in_vietnam_time_is_refused():
    with pytest.raises(ValueError, match="outside the years 1 to 9999 in Vietnam time"):
        period("9999-12-31T20:00-05:00")
    with pytest.raises(ValueError, match="outside the years 1 to 9999"):
        period("0001-01-01T00:00+08:00")


@given(st.one_of(st.integers(1, 9999).map(lambda y: f"{y:04d}"), DAYS.map(year_month), DAYS))
def test_a_period_starts_no_later_than_it_ends(value):
    start, end = period(value)
    assert start <= end
    assert start.tzinfo is not None and end.tzinfo is not None


@given(st.integers(1, 9998))
def test_a_year_is_followed_by_the_next(year):
    assert period_end(f"{year:04d}") + ONE_MICROSECOND == period_start(f"{year + 1:04d}")


@given(DAYS.filter(lambda d: d < date(9999, 12, 1)))
def test_a_month_is_followed_by_the_next(day):
    this = period(year_month(day))
    after = this.end + ONE_MICROSECOND
    assert after == period_start(year_month(after))
    assert this.start.day == 1 and this.start.month == day.month


@given(DAYS)
def test_a_day_round_trips_and_matches_a_date_object(day):
    first, last = datetime.combine(day, time.min, VIETNAM_TZ), datetime.combine(day, time.max, VIETNAM_TZ)
    assert period(day.isoformat()) == period(day) == Period(first, last)


@given(INSTANTS, OFFSETS)
def test_a_date_time_round_trips(moment, offset):
    aware = moment.replace(tzinfo=offset)
    assert period(aware.isoformat()) == period(aware) == Period(aware, aware)
    assert period_start(moment.isoformat()) == moment.replace(tzinfo=VIETNAM_TZ)


@given(st.integers(0, 10_000), st.integers(0, 13), st.integers(0, 32))
@example(2000, 2, 29)
@example(2100, 2, 29)
@example(2024, 2, 29)
@example(2023, 2, 29)
def test_a_date_is_accepted_exactly_when_the_calendar_has_it(year, month, day):
    text = f"{year:04d}-{month:02d}-{day:02d}"
    try:
        real = date(year, month, day)
    except ValueError:
        with pytest.raises(ValueError, match="expected an ISO 8601"):
            period(text)
    else:
        assert period_start(text).date() == real


@given(st.from_regex(PATTERN, fullmatch=True))
def test_everything_the_published_pattern_matches_is_accepted(text):
    try:
        start, end = period(text)
    except ValueError as exc:  # only an instant pushed off the calendar by its offset
        assert "outside the years 1 to 9999" in str(exc)
    else:
        assert start <= end


@given(st.text(alphabet="0123456789-:T .Z+", max_size=30))
def test_the_pattern_and_the_parser_agree(text):
    matched = re.fullmatch(PATTERN, text, re.ASCII) is not None
    try:
        period(text)
        accepted = True
    except ValueError as exc:
        accepted = "outside the years" in str(exc)
    assert accepted == matched
