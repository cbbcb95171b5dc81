"""FHIR / ISO date and dateTime strings → microseconds since the epoch, UTC.

FHIR allows `YYYY`, `YYYY-MM`, `YYYY-MM-DD` and `YYYY-MM-DDThh:mm:ss(.sss)(Z|±hh:mm)`. Partial dates
take the first instant of the period (documented in the README); times with an offset are moved to UTC;
a dateTime without an offset is taken as UTC. Returns None for text that is not a date.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAY_US = 86_400_000_000


@lru_cache(maxsize=65536)
def _date_us(text: str) -> int | None:
    n = len(text)
    try:
        if n == 10:
            return (
                date(int(text[0:4]), int(text[5:7]), int(text[8:10])).toordinal() - _EPOCH_ORDINAL
            ) * _DAY_US
        if n == 7:
            return (date(int(text[0:4]), int(text[5:7]), 1).toordinal() - _EPOCH_ORDINAL) * _DAY_US
        if n == 4:
            return (date(int(text), 1, 1).toordinal() - _EPOCH_ORDINAL) * _DAY_US
    except ValueError:
        return None
    return None


def parse_datetime_us(text: str | None) -> int | None:
    """Parse a FHIR date/dateTime/instant; None when absent or not a valid date."""
    if not text or not isinstance(text, str):
        return None
    if len(text) <= 10:
        return _date_us(text)
    return _datetime_us(text)


@lru_cache(maxsize=16384)  # timestamps repeat within an encounter; parsing dominates the cost
def _datetime_us(text: str) -> int | None:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def us_to_datetime(us: int) -> datetime:
    """Inverse helper for tests and reports (naive UTC, as stored)."""
    return datetime(1970, 1, 1) + timedelta(microseconds=us)
