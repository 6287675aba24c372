"""The list cursor both stores issue: an opaque, URL-safe token for the last row's (created_at, id), the sort key
of `JobStore.list` (newest first), so a page continues exactly after the row it ended on."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime

from robotrain.errors import InvalidRequest

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_time(value: datetime) -> str:
    """Fixed-width ISO-8601 UTC with microseconds and a `Z`: text order is time order, and no `+` for a query string
    to turn into a space. Naive means UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime(_TIME_FORMAT)


def encode_cursor(created_at: datetime, job_id: str) -> str:
    raw = json.dumps([format_time(created_at), job_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor points after; InvalidRequest for anything a store did not issue."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, job_id = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(created_at, str) or not isinstance(job_id, str):
            raise ValueError("cursor fields are not strings")
        when = datetime.strptime(created_at, _TIME_FORMAT).replace(tzinfo=UTC)
    except (ValueError, TypeError, UnicodeError, binascii.Error):
        raise InvalidRequest("invalid cursor") from None
    return when, job_id
