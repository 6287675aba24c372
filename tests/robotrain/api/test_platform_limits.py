"""Limits of the platform a job runs on, refused at submit rather than failing on the GPU."""

from __future__ import annotations

from tests.robotrain.api.conftest import VALID_SPEC
from training.spec import MAX_TIMEOUT_MINUTES, PLATFORM_MAX_TIMEOUT_S, TIMEOUT_GRACE_S


def with_timeout(minutes: int) -> dict:
    return {**VALID_SPEC, "compute": {"gpu": "T4", "timeout_minutes": minutes}}


def test_the_longest_timeout_fits_modals_24_hour_cap_with_the_launchers_grace() -> None:
    assert MAX_TIMEOUT_MINUTES * 60 + TIMEOUT_GRACE_S <= PLATFORM_MAX_TIMEOUT_S == 24 * 3600
    assert (MAX_TIMEOUT_MINUTES + 1) * 60 + TIMEOUT_GRACE_S > PLATFORM_MAX_TIMEOUT_S


def test_a_timeout_past_the_cap_is_refused_with_422_naming_the_field(client, alice) -> None:
    for minutes in (MAX_TIMEOUT_MINUTES + 1, 24 * 60):
        response = client.post("/jobs", json=with_timeout(minutes), headers=alice)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"][0]["loc"][-2:] == ["compute", "timeout_minutes"]


def test_the_longest_allowed_timeout_is_accepted(client, alice) -> None:
    response = client.post("/jobs", json=with_timeout(MAX_TIMEOUT_MINUTES), headers=alice)
    assert response.status_code == 202, response.text
