"""The control plane: the drain (queue → claimed, launched jobs), the sweep (outbox re-sends, lost workers,
timeouts, compute release) and the Dispatcher that runs both: in production the Modal `drain` function, locally the
DispatchLoop thread beside the API. It shares no memory with the API or the workers; the store and queue are its
only links to them."""

from robotrain.control.drain import Drainer, DrainReport
from robotrain.control.loop import Dispatcher, DispatchLoop
from robotrain.control.sweep import Sweeper, SweepReport

__all__ = ["DispatchLoop", "Dispatcher", "DrainReport", "Drainer", "SweepReport", "Sweeper"]
