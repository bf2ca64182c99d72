"""Time as the store keeps it: UTC, to the millisecond."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """Now in UTC, trimmed to the millisecond that MongoDB keeps, so what is answered equals what is stored."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def as_utc(value: datetime) -> datetime:
    """A stored datetime as an aware UTC value.

    nx-27017 stores a datetime written by `$set` as a naive UTC string; MongoDB keeps a date (and
    tz_aware=True returns it in UTC). Both read back as the same aware value.
    """
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def stored_datetime(value: datetime | str) -> datetime:
    """A datetime read back from either store: nx-27017 keeps one written by `$set` as a naive ISO string."""
    return as_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
