from __future__ import annotations

from collections.abc import Iterator

import pytest

import training.trainer
from tests.faults.harness import TrainingRuns


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[TrainingRuns]:
    counter = TrainingRuns()
    monkeypatch.setattr(training.trainer, "run", counter)
    yield counter
