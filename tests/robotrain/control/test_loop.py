from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from robotrain.control.loop import Dispatcher, DispatchLoop
from robotrain.jobs.models import JobStatus
from robotrain.jobs.service import JobService
from tests.support.components import fast_spec, make_components


def wait_until(predicate, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class CountingDispatcher(Dispatcher):
    sweeps = 0

    def sweep(self):
        report = super().sweep()
        self.sweeps += 1  # the tick is over
        return report


def test_a_kick_drains_at_once_and_stop_joins_the_thread(tmp_path: Path) -> None:
    components = make_components(tmp_path)
    dispatcher = CountingDispatcher(components)
    loop = DispatchLoop(dispatcher, interval_s=3600)
    loop.start()
    try:
        assert wait_until(lambda: dispatcher.sweeps == 1)  # the first tick is over: only a kick can drain now
        job = JobService(components, kick=loop.kick).submit("alice", fast_spec())
        assert wait_until(lambda: components.store.get(job.id).status is JobStatus.STARTING)
    finally:
        loop.stop()
    assert not loop.running


def test_the_loop_survives_a_failing_tick(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    components = make_components(tmp_path)

    class FlakyDispatcher(Dispatcher):
        calls = 0

        def drain_once(self):
            FlakyDispatcher.calls += 1
            if FlakyDispatcher.calls == 1:
                raise RuntimeError("a bug in one tick")
            return super().drain_once()

    loop = DispatchLoop(FlakyDispatcher(components), interval_s=0.05)
    with caplog.at_level(logging.ERROR, logger="robotrain.control.loop"):
        loop.start()
        try:
            job = JobService(components).submit("alice", fast_spec())
            assert wait_until(lambda: components.store.get(job.id).status is JobStatus.STARTING)
        finally:
            loop.stop()
    assert "drain failed" in caplog.text and "a bug in one tick" in caplog.text
