"""Clocks a test moves by hand, so code that waits for time to pass is tested without sleeping (and without failing
when a loaded machine makes a sleep or a request run long)."""

from __future__ import annotations

from datetime import datetime, timedelta

from robotrain.jobs.models import utcnow


class ManualClock:
    """Monotonic seconds (a `time.monotonic` stand-in) that move only when the test says; counts its reads, so a
    test can wait until the code under test has looked at it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class UtcClock:
    """UTC now (a `utcnow` stand-in): the real time plus what the test has advanced. Rows a store stamps with the real
    time then look exactly that much older to the code under test, however long the test itself took."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)
