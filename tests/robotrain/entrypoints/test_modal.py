"""robotrain.entrypoints.modal, the bodies of modal_app.py's functions, over the embedded store and queue with the
Modal fakes of tests/support/modal_fakes.py (Modal cannot run here): what a warm container keeps between runs, and
what a kicked drain does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from robotrain.entrypoints import modal as entry
from robotrain.jobs.models import JobStatus
from robotrain.jobs.service import JobService
from robotrain.settings import Settings
from tests.support.components import fast_spec
from tests.support.modal_fakes import FakeFunction, FakeVolume


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # the embedded queue never answers empty while a message is visible: no long poll needed (or wanted) here
    return Settings(
        _env_file=None, data_dir=tmp_path / "data", max_concurrent_jobs=5, drain_kick_wait_s=5, drain_receive_wait_s=0
    )


@pytest.fixture
def container() -> Iterator[None]:
    """A fresh container: no Dispatcher built yet (and none left behind for other tests)."""
    entry._dispatchers.clear()
    yield
    entry._dispatchers.clear()


def backdate_idempotency_keys(settings: Settings) -> None:
    import sqlite3

    with sqlite3.connect(settings.data_dir / "robotrain.sqlite3") as conn:
        conn.execute("UPDATE idempotency_keys SET created_at = '2000-01-01T00:00:00.000000Z'")


def idempotency_keys(settings: Settings) -> list[str]:
    import sqlite3

    with sqlite3.connect(settings.data_dir / "robotrain.sqlite3") as conn:
        return [key for (key,) in conn.execute("SELECT key FROM idempotency_keys")]


def test_a_warm_drain_container_reuses_its_clients_and_sweeper(settings, container) -> None:
    train, volume = FakeFunction(), FakeVolume()
    first = entry._container_dispatcher(settings, train=train, volume=volume)
    entry.drain_and_sweep(settings, train=train, volume=volume)
    JobService(first.components).submit("alice", fast_spec(), idempotency_key="key-1")
    backdate_idempotency_keys(settings)  # a key past its 24 h, remembered after this container's first sweep

    entry.drain_and_sweep(Settings(**settings.model_dump()), train=train, volume=volume)  # the next minute's run

    assert entry._container_dispatcher(settings, train=train, volume=volume) is first
    assert idempotency_keys(settings) == ["key-1"]  # the hourly cleanup ran once, not per run
    entry._dispatchers.clear()  # a new container
    entry.drain_and_sweep(settings, train=train, volume=volume)
    assert idempotency_keys(settings) == []


def test_a_drain_kicked_for_a_job_launches_it_and_leaves_the_sweep_to_the_schedule(settings, container) -> None:
    train, volume = FakeFunction(), FakeVolume()
    components = entry._container_dispatcher(settings, train=train, volume=volume).components
    job = JobService(components).submit("alice", fast_spec())

    result = entry.drain_and_sweep(settings, job.id, train=train, volume=volume)

    assert "sweep" not in result
    assert train.spawned == [(job.id, 1)]
    assert components.store.get(job.id).status is JobStatus.STARTING
