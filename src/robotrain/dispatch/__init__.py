"""Dispatch: the drain (queue → claimed, launched jobs), the sweep (outbox re-sends, lost workers, timeouts), the
local loop that runs them, and the worker process that trains one attempt of a job."""

from robotrain.dispatch.drain import Drainer, DrainReport
from robotrain.dispatch.loop import Dispatcher, DispatchLoop
from robotrain.dispatch.sweep import Sweeper, SweepReport

__all__ = ["DispatchLoop", "Dispatcher", "DrainReport", "Drainer", "SweepReport", "Sweeper"]
