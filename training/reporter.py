"""The reporter: how a training run talks to whoever started it (the CLI, the service's worker, a test).

`training.run` calls `progress` at most every few seconds with metrics averaged since the previous call, `checkpoint`
after each checkpoint is complete on disk, `log` for human-readable lines, and `should_stop` once per step; when it
returns True the run saves a checkpoint and returns a result with `stopped=True`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class Reporter(Protocol):
    def progress(self, step: int, total: int, metrics: dict[str, float]) -> None: ...

    def checkpoint(self, step: int, path: Path) -> None: ...

    def log(self, message: str) -> None: ...

    def should_stop(self) -> bool: ...


class NullReporter:
    """Reports nothing and never asks to stop."""

    def progress(self, step: int, total: int, metrics: dict[str, float]) -> None:
        pass

    def checkpoint(self, step: int, path: Path) -> None:
        pass

    def log(self, message: str) -> None:
        pass

    def should_stop(self) -> bool:
        return False
