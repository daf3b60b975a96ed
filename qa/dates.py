"""Publication-date filter bounds: an ISO 8601 date or date-time, or a year / year-month meaning the whole period.

Standard library only: the light client validates with it as well as the server. `PATTERN` is the grammar
(the API's JSON schema publishes it); `period` turns text into the first and last instant it covers.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, time, timedelta, timezone
from typing import NamedTuple

__all__ = ["EXPECTED", "PATTERN", "VIETNAM_TZ", "Period", "period", "period_end", "period_start"]

VIETNAM_TZ = timezone(timedelta(hours=7))  # the store keeps naive Vietnam local times

EXPECTED = "an ISO 8601 date or date-time, or a year (2020) or year-month (2020-05)"

# ECMA-262 compatible (the JSON schema's dialect): non-capturing groups, ASCII digits spelt [0-9].
# Calendar rules are part of the grammar (no 30 February, 29 February in leap years only), so a string the
# pattern accepts is a real date and the schema describes exactly what the server takes.
_YEAR = r"(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_LEAP_YEAR = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_MONTH = r"(?:0[1-9]|1[0-2])"
_MONTH_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_DATE = rf"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
_OFFSET = r"(?:Z|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)"
PATTERN = rf"^(?:{_YEAR}(?:-{_MONTH})?|{_DATE}(?:[T ]{_TIME}{_OFFSET}?)?)$"

_GRAMMAR = re.compile(PATTERN, re.ASCII)


class Period(NamedTuple):
    """The first and last instant (both inclusive, timezone-aware) a bound covers."""

    start: datetime
    end: datetime


def period(value: str | date) -> Period:
    """The instants `value` covers: a year, month or day is the whole of it in Vietnam time; a date-time is
    one instant (Vietnam time when it has no offset). A `date` object is its day, a `datetime` its instant.

    Raises ValueError, saying what is accepted, for anything else.
    """
    if isinstance(value, datetime):
        return _instant(value)
    if isinstance(value, date):
        return _days(value, value)
    if not isinstance(value, str):
        raise ValueError(f"expected a string holding {EXPECTED}; got {_shown(value)} ({type(value).__name__})")
    if not _GRAMMAR.fullmatch(value):
        raise ValueError(f"expected {EXPECTED}; got {_shown(value)}")
    if len(value) == 4:
        year = int(value)
        return _days(date(year, 1, 1), date(year, 12, 31))
    if len(value) == 7:
        year, month = int(value[:4]), int(value[5:])
        return _days(date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1]))
    if len(value) == 10:
        return _days(date.fromisoformat(value), date.fromisoformat(value))
    return _instant(datetime.fromisoformat(value))


def period_start(value: str | date) -> datetime:
    """The first instant of `value` (see `period`): the lower bound `published_from` means."""
    return period(value).start


def period_end(value: str | date) -> datetime:
    """The last instant of `value` (see `period`): `published_to` includes the whole day, month or year."""
    return period(value).end


def _days(first: date, last: date) -> Period:
    return Period(datetime.combine(first, time.min, VIETNAM_TZ), datetime.combine(last, time.max, VIETNAM_TZ))


def _instant(value: datetime) -> Period:
    if value.tzinfo is None:
        value = value.replace(tzinfo=VIETNAM_TZ)
    try:
        value.astimezone(VIETNAM_TZ)  # the store compares in Vietnam local time: it must exist there
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is outside the years 1 to 9999 in Vietnam time (UTC+7)") from None
    return Period(value, value)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."
