"""Fixtures shared across the suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import moto


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server (separate process, 127.0.0.1) for the whole session; tests reset what they use."""
    with moto.moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Fake credentials and region in the environment, so boto3 (and subprocesses) talk only to moto."""
    for name, value in moto.FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return moto_endpoint


# Supabase: a throwaway PostgreSQL 15 cluster + the PostgREST-subset server, started only when a test asks for them.
from tests.support.supabase_env import postgres_cluster, supabase, supabase_stack  # noqa: E402, F401
