from datetime import UTC, datetime, timedelta, timezone

import pytest

from robotrain.errors import InvalidRequest
from robotrain.jobs.cursor import decode_cursor, encode_cursor, format_time

INSTANT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def test_times_are_fixed_width_utc_with_z_so_text_order_is_time_order_and_a_query_string_cannot_mangle_them() -> None:
    assert format_time(INSTANT) == "2026-01-02T03:04:05.678901Z"
    assert format_time(INSTANT.astimezone(timezone(timedelta(hours=2)))) == "2026-01-02T03:04:05.678901Z"
    assert format_time(INSTANT.replace(tzinfo=None)) == "2026-01-02T03:04:05.678901Z"  # naive means UTC


def test_a_cursor_round_trips_to_the_same_instant_and_id() -> None:
    assert decode_cursor(encode_cursor(INSTANT, "job_x")) == (INSTANT, "job_x")


@pytest.mark.parametrize("cursor", ["", "garbage", "e30", encode_cursor(INSTANT, "job_x")[:-3] + "!!!"])
def test_anything_a_store_did_not_issue_is_an_invalid_request(cursor: str) -> None:
    with pytest.raises(InvalidRequest):
        decode_cursor(cursor)
