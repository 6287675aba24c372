"""The Dispatcher (drain + sweep, the same code locally and in the Modal drain function) and the local DispatchLoop
that runs it on a background thread."""

from __future__ import annotations

import logging
import threading

from robotrain.control.drain import Drainer, DrainReport
from robotrain.control.sweep import Sweeper, SweepReport
from robotrain.control.webhooks import RelayReport, WebhookRelay
from robotrain.ports import Components

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        components: Components,
        *,
        drainer: Drainer | None = None,
        sweeper: Sweeper | None = None,
        relay: WebhookRelay | None = None,
    ):
        self.components = components
        self._drainer = drainer or Drainer(components)
        self._sweeper = sweeper or Sweeper(components)
        self._relay = relay or WebhookRelay(components)

    def drain_once(self, *, wait_for: str | None = None) -> DrainReport:
        return self._drainer.drain_once(wait_for=wait_for)

    def sweep(self) -> SweepReport:
        return self._sweeper.sweep()

    def relay_webhooks(self) -> RelayReport:
        return self._relay.run_once()


class DispatchLoop:
    """Drains, sweeps and relays webhooks every `interval_s`, and at once after kick(). A failing tick is logged with
    its traceback and the loop goes on: the loop is the supervisor, and a bug in one tick must not stop dispatch for
    everyone."""

    def __init__(self, dispatcher: Dispatcher, interval_s: float):
        self._dispatcher = dispatcher
        self._interval_s = interval_s
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the dispatch loop is already started")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="robotrain-dispatch", daemon=True)
        self._thread.start()

    def kick(self, job_id: str | None = None) -> None:
        """Drain now. The job id a submit passes is not needed here: the embedded queue has the job's message the
        moment the submit returns (robotrain.control.drain, "Receiving")."""
        self._wake.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        self._wake.set()
        thread.join(timeout_s)
        if thread.is_alive():
            log.warning("the dispatch loop did not stop within %.0f s", timeout_s)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._tick()
            self._wake.wait(self._interval_s)
            self._wake.clear()

    def _tick(self) -> None:
        try:
            self._dispatcher.drain_once()
        except Exception:  # noqa: BLE001 - supervisor: log and keep dispatching (see class doc)
            log.exception("drain failed")
        if self._stopping.is_set():
            return
        try:
            self._dispatcher.sweep()
        except Exception:  # noqa: BLE001 - supervisor: log and keep dispatching (see class doc)
            log.exception("sweep failed")
        try:
            self._dispatcher.relay_webhooks()
        except Exception:  # noqa: BLE001 - supervisor: log and keep dispatching (see class doc)
            log.exception("webhook relay failed")
