"""What a user may do with webhook endpoints: register, list, delete, rotate the secret, read deliveries with their
attempts, and redeliver one by hand. Routes call it; the relay (robotrain.control.webhooks) sends the deliveries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from robotrain.jobs.models import utcnow
from robotrain.ports import WebhookStore
from robotrain.settings import Settings
from robotrain.webhooks.addresses import resolve
from robotrain.webhooks.errors import DeliveryNotFound, WebhookLimitReached, WebhookNotFound
from robotrain.webhooks.models import Delivery, WebhookEndpoint, WebhookEventType, new_endpoint_id, new_secret

MAX_ENDPOINTS_PER_USER = 20


class WebhookService:
    def __init__(
        self,
        store: WebhookStore,
        settings: Settings,
        *,
        now: Callable[[], datetime] = utcnow,
    ):
        self._store = store
        self._settings = settings
        self._now = now

    def create(self, user_id: str, url: str, events: list[WebhookEventType] | None) -> WebhookEndpoint:
        """Register an endpoint for `events` (all of them when None). The URL is checked (and resolved) now and
        again at every delivery."""
        resolve(url, allow_private=self._settings.webhook_allow_private)
        if self._store.count_endpoints(user_id=user_id) >= MAX_ENDPOINTS_PER_USER:
            raise WebhookLimitReached(f"at most {MAX_ENDPOINTS_PER_USER} webhook endpoints per user; delete one first")
        chosen = list(dict.fromkeys(events)) if events else list(WebhookEventType)
        endpoint = WebhookEndpoint(
            id=new_endpoint_id(), user_id=user_id, url=url, events=chosen, secret=new_secret(), created_at=self._now()
        )
        return self._store.create_endpoint(endpoint)

    def get(self, user_id: str, endpoint_id: str) -> WebhookEndpoint:
        endpoint = self._store.get_endpoint(endpoint_id, user_id=user_id)
        if endpoint is None:
            raise WebhookNotFound(endpoint_id)
        return endpoint

    def list_endpoints(self, user_id: str) -> list[WebhookEndpoint]:
        return self._store.list_endpoints(user_id=user_id)

    def delete(self, user_id: str, endpoint_id: str) -> None:
        if not self._store.delete_endpoint(endpoint_id, user_id=user_id):
            raise WebhookNotFound(endpoint_id)

    def rotate_secret(self, user_id: str, endpoint_id: str) -> WebhookEndpoint:
        """A new secret, in effect for the next attempt (the old one stops verifying at once)."""
        endpoint = self._store.set_secret(endpoint_id, user_id=user_id, secret=new_secret())
        if endpoint is None:
            raise WebhookNotFound(endpoint_id)
        return endpoint

    def deliveries(self, user_id: str, endpoint_id: str, *, limit: int = 50) -> list[Delivery]:
        self.get(user_id, endpoint_id)
        return self._store.list_deliveries(endpoint_id, limit=limit)

    def redeliver(self, user_id: str, endpoint_id: str, delivery_id: str) -> Delivery:
        """Send the delivery again now (whatever its state), with a fresh retry window."""
        self.get(user_id, endpoint_id)
        now = self._now()
        delivery = self._store.redeliver(
            delivery_id,
            endpoint_id=endpoint_id,
            now=now,
            retry_until=now + timedelta(seconds=self._settings.webhook_retry_for_s),
        )
        if delivery is None:
            raise DeliveryNotFound(delivery_id)
        return delivery
