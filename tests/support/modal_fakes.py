"""Stand-ins for the Modal objects the service calls (a spawnable function, its FunctionCalls, a Volume).

Modal cannot run here (no account, no network), so these record what the code asks of Modal and raise Modal's own
exception types (modal.exception.*) where a test needs the platform to fail; everything around them is real."""

from __future__ import annotations

from typing import Any


class FakeCall:
    """A FunctionCall: `outcome` is what get(timeout=0) raises (None: the call returned); `cancel_error` is what
    cancel() raises."""

    def __init__(self, object_id: str, outcome: BaseException | None = None):
        self.object_id = object_id
        self.outcome = outcome
        self.cancel_error: BaseException | None = None
        self.cancelled_with: list[bool] = []

    def get(self, timeout: float | None = None) -> Any:
        assert timeout == 0, "the launcher must only poll"
        if self.outcome is not None:
            raise self.outcome
        return None

    def cancel(self, terminate_containers: bool = False) -> None:
        if self.cancel_error is not None:
            raise self.cancel_error
        self.cancelled_with.append(terminate_containers)


class FakeFunction:
    """A spawnable Modal function: records per-call options and spawns; `spawn_errors` are raised by the next
    spawns, in order. Each spawn's FunctionCall is kept in `calls` by its id (fc-1, fc-2, ...)."""

    def __init__(self) -> None:
        self.options: list[dict[str, Any]] = []
        self.spawned: list[tuple[Any, ...]] = []
        self.calls: dict[str, FakeCall] = {}
        self.spawn_errors: list[BaseException] = []

    def with_options(self, **options: Any) -> FakeFunction:
        self.options.append(options)
        return self

    def spawn(self, *args: Any) -> FakeCall:
        if self.spawn_errors:
            raise self.spawn_errors.pop(0)
        self.spawned.append(args)
        call = FakeCall(f"fc-{len(self.spawned)}")
        self.calls[call.object_id] = call
        return call

    def function_call(self, handle: str) -> FakeCall:
        """What modal.FunctionCall.from_id would return for a handle this function spawned."""
        return self.calls[handle]


class FakeVolume:
    def __init__(self) -> None:
        self.commits = 0
        self.reloads = 0

    def commit(self) -> None:
        self.commits += 1

    def reload(self) -> None:
        self.reloads += 1
