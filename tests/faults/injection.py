"""Deterministic fault injection around REAL adapters (the SQLite store, the local queue, the real launchers).

Every fault is chosen by call number or by an explicit switch, never at random, so a failing run can be replayed
exactly. The wrappers pass every other call, and every attribute, straight through to the adapter underneath.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any


class FailOn:
    """Wraps `target`; call number n (1-based, counted per method) of a method in `plan` raises `make_error()`
    instead of reaching the target when n is in plan[method]. `calls` records how often each planned method was
    called, failing or not."""

    def __init__(self, target: Any, make_error: Callable[[], BaseException], **plan: Collection[int]):
        self._target = target
        self._make_error = make_error
        self._plan = {name: frozenset(numbers) for name, numbers in plan.items()}
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()

    @property
    def target(self) -> Any:
        return self._target

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name not in self._plan:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls[name] += 1
                number = self.calls[name]
            if number in self._plan[name]:
                raise self._make_error()
            return attribute(*args, **kwargs)

        return call


class Outage:
    """Wraps `target`; while `down` is True every method call raises `make_error()` (the dependency is unreachable:
    connection refused). The test flips `down`; nothing else does."""

    def __init__(self, target: Any, make_error: Callable[[], BaseException], *, down: bool = False):
        self._target = target
        self._make_error = make_error
        self.down = down

    @property
    def target(self) -> Any:
        return self._target

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise self._make_error()
            return attribute(*args, **kwargs)

        return call


class Intercept:
    """Wraps `target`; runs `before[method]()` just before, and `after[method](result)` just after, the FIRST call of
    that method: the hook that puts a concurrent actor (a user's cancel) exactly into a race window."""

    def __init__(
        self,
        target: Any,
        *,
        before: dict[str, Callable[[], None]] | None = None,
        after: dict[str, Callable[[Any], None]] | None = None,
    ):
        self._target = target
        self._before = dict(before or {})
        self._after = dict(after or {})

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name not in self._before and name not in self._after:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            before = self._before.pop(name, None)
            if before is not None:
                before()
            result = attribute(*args, **kwargs)
            after = self._after.pop(name, None)
            if after is not None:
                after(result)
            return result

        return call
