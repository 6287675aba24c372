"""The webhook relay: the control plane's part of webhooks, run on each dispatcher tick (the local DispatchLoop, and
Modal's drain function).

1. Fan-out: status events into running / succeeded / failed / cancelled become deliveries, one per subscribed
   endpoint of the job's owner, in the store's outbox. The relay reads events after a durable cursor; it re-reads
   the last `settle_s` of them each time (an event id can become visible after a higher one on PostgreSQL), which is
   harmless because a delivery is unique per (endpoint, event). It reads events the lifecycle already writes, so it
   adds nothing to the job's hot path.
2. Delivery: due deliveries are leased (a compare-and-set on their next attempt time, so two relays never send the
   same attempt), sent in parallel, and their attempt recorded; a failure is retried on the backoff schedule until
   the delivery's retry window (`webhook_retry_for_s`) has passed, then the delivery is failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from robotrain.jobs.lifecycle import DEPENDENCY_DOWN_ERRORS
from robotrain.jobs.models import utcnow
from robotrain.jobs.public import public_job
from robotrain.ports import Components, WebhookStore
from robotrain.webhooks.delivery import Outcome, WebhookSender, retry_delay
from robotrain.webhooks.models import (
    EVENT_STATUSES,
    Delivery,
    DeliveryStatus,
    StatusEvent,
    WebhookEndpoint,
    WebhookEventType,
    new_delivery_id,
)

log = logging.getLogger(__name__)

SETTLE_S = 60.0
EVENT_BATCH = 500
DELIVERY_BATCH = 50
PARALLEL_SENDS = 8


@dataclass
class RelayReport:
    events: int = 0
    queued: int = 0  # new deliveries
    sent: int = 0
    succeeded: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class WebhookRelay:
    def __init__(
        self,
        components: Components,
        *,
        sender: WebhookSender | None = None,
        now: Callable[[], datetime] = utcnow,
        settle_s: float = SETTLE_S,
    ):
        self._store: WebhookStore | None = components.webhooks
        self._settings = components.settings
        self._sender = sender
        self._now = now
        self._settle_s = settle_s

    def run_once(self) -> RelayReport:
        report = RelayReport()
        if self._store is None:
            return report
        try:
            self._fan_out(self._store, report)
            self._deliver_due(self._store, report)
        except DEPENDENCY_DOWN_ERRORS as exc:
            log.warning("webhook relay stopped: %s; it goes on at the next tick", exc)
        return report

    def close(self) -> None:
        if self._sender is not None:
            self._sender.close()

    # --- fan-out ---------------------------------------------------------------------------------------------

    def _fan_out(self, store: WebhookStore, report: RelayReport) -> None:
        cursor = store.relay_cursor()
        events = store.status_events(after=cursor, statuses=EVENT_STATUSES, limit=EVENT_BATCH)
        report.events = len(events)
        if not events:
            return
        endpoints: dict[str, list[WebhookEndpoint]] = {}
        for endpoint in store.endpoints_of({event.job.user_id for event in events}):
            endpoints.setdefault(endpoint.user_id, []).append(endpoint)
        now = self._now()
        deliveries = [
            delivery
            for event in events
            for endpoint in endpoints.get(event.job.user_id, [])
            if (delivery := self._delivery(event, endpoint, now)) is not None
        ]
        report.queued = store.add_deliveries(deliveries)
        settled = cursor
        for event in events:  # the cursor moves over settled events only, in id order
            if now - event.at < timedelta(seconds=self._settle_s):
                break
            settled = event.event_id
        if settled > cursor:
            store.set_relay_cursor(settled)

    def _delivery(self, event: StatusEvent, endpoint: WebhookEndpoint, now: datetime) -> Delivery | None:
        kind = WebhookEventType.for_status(event.status)
        # An endpoint hears of what happened after it was registered, not of the relay's backlog before that.
        if kind is None or kind not in endpoint.events or event.at < endpoint.created_at:
            return None
        return Delivery(
            id=new_delivery_id(),
            endpoint_id=endpoint.id,
            event_id=event.event_id,
            type=kind,
            payload={"type": kind.value, "timestamp": event.at.isoformat(), "data": public_job(event.job)},
            next_attempt_at=now,
            retry_until=now + timedelta(seconds=self._settings.webhook_retry_for_s),
            created_at=now,
            updated_at=now,
        )

    # --- delivery --------------------------------------------------------------------------------------------

    def _deliver_due(self, store: WebhookStore, report: RelayReport) -> None:
        now = self._now()
        lease_until = now + timedelta(seconds=self._settings.webhook_timeout_s + 30)
        leased: list[tuple[Delivery, WebhookEndpoint]] = []
        endpoints: dict[str, WebhookEndpoint | None] = {}
        for due in store.due_deliveries(now=now, limit=DELIVERY_BATCH):
            if due.endpoint_id not in endpoints:
                endpoints[due.endpoint_id] = store.get_endpoint(due.endpoint_id)
            endpoint = endpoints[due.endpoint_id]
            if endpoint is None or due.next_attempt_at is None:
                continue  # deleted meanwhile (its deliveries go with it)
            mine = store.lease_delivery(due.id, expected_next_at=due.next_attempt_at, until=lease_until)
            if mine is not None:
                leased.append((mine, endpoint))
        if not leased:
            return
        if self._sender is None:
            self._sender = WebhookSender(self._settings)
        sender = self._sender
        with ThreadPoolExecutor(max_workers=min(PARALLEL_SENDS, len(leased))) as pool:
            outcomes = list(pool.map(lambda pair: sender.send(pair[1], pair[0], now), leased))
        for (delivery, _), outcome in zip(leased, outcomes, strict=True):
            self._record(store, delivery, outcome, now, report)

    def _record(
        self, store: WebhookStore, delivery: Delivery, outcome: Outcome, now: datetime, report: RelayReport
    ) -> None:
        attempts = delivery.attempts + 1
        report.sent += 1
        if outcome.ok:
            status, next_at = DeliveryStatus.SUCCEEDED, None
            report.succeeded.append(delivery.id)
        else:
            next_at = now + timedelta(seconds=retry_delay(attempts, self._settings))
            if next_at > delivery.retry_until:
                status, next_at = DeliveryStatus.FAILED, None
                report.failed.append(delivery.id)
                log.warning("webhook delivery %s failed for good after %d attempts", delivery.id, attempts)
            else:
                status = DeliveryStatus.PENDING
                report.retrying.append(delivery.id)
        store.record_attempt(delivery.id, outcome.attempt, status=status, attempts=attempts, next_attempt_at=next_at)
