"""Sending one delivery: check the endpoint's address again, sign the stored payload per Standard Webhooks, POST it
to the checked address with a timeout and no redirects, and judge the answer. And the retry schedule.

A 2xx answer is success; anything else (another status, a redirect, a timeout, a refused address) is a failed
attempt, retried after `retry_delay` until the delivery's retry window has passed."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime

import httpx

from robotrain.settings import Settings
from robotrain.webhooks.addresses import resolve
from robotrain.webhooks.errors import WebhookUrlRefused
from robotrain.webhooks.models import Delivery, DeliveryAttempt, WebhookEndpoint
from robotrain.webhooks.signing import signed_headers

MAX_RECORDED_BODY = 1024  # characters of a response body kept with the attempt
USER_AGENT = "robotrain-webhooks/1"
# httpx's transport errors: no answer came. Every one is a failed attempt, retried on the schedule.
TRANSIENT_HTTP_ERRORS = (httpx.TransportError,)


def retry_delay(attempts: int, settings: Settings) -> float:
    """Seconds before the next attempt after `attempts` failed ones: base × 4^(attempts-1), capped (5 s, 20 s, 80 s,
    ~5 min, ~21 min, ~85 min, ~5.7 h, then 6 h by default)."""
    return min(settings.webhook_retry_max_s, settings.webhook_retry_base_s * 4 ** max(0, attempts - 1))


def payload_body(delivery: Delivery) -> str:
    """The exact bytes signed and sent: the stored payload, compact."""
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class Outcome:
    attempt: DeliveryAttempt
    ok: bool


class WebhookSender:
    def __init__(self, settings: Settings, *, client: httpx.Client | None = None):
        self._settings = settings
        self._client = client or httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False)

    def close(self) -> None:
        self._client.close()

    def send(self, endpoint: WebhookEndpoint, delivery: Delivery, now: datetime) -> Outcome:
        started = time.monotonic()

        def attempt(status_code: int | None = None, error: str | None = None, body: str = "") -> DeliveryAttempt:
            return DeliveryAttempt(
                at=now,
                status_code=status_code,
                error=error,
                response_body=body[:MAX_RECORDED_BODY],
                duration_ms=int((time.monotonic() - started) * 1000),
            )

        try:
            target = resolve(endpoint.url, allow_private=self._settings.webhook_allow_private)
        except WebhookUrlRefused as exc:
            return Outcome(attempt(error=f"refused: {exc.message}"), ok=False)
        body = payload_body(delivery)
        headers = {
            **signed_headers(endpoint.secret, delivery.message_id, now, body),
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "host": target.host_header,
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            with self._client.stream(
                "POST", target.connect_url, content=body.encode(), headers=headers, extensions=extensions
            ) as response:
                received = b""
                for chunk in response.iter_bytes():  # only the start of a body is kept: never read a huge one
                    received += chunk
                    if len(received) >= MAX_RECORDED_BODY:
                        break
        except TRANSIENT_HTTP_ERRORS as exc:
            return Outcome(attempt(error=f"{type(exc).__name__}: {exc}"[:500]), ok=False)
        ok = 200 <= response.status_code < 300
        error = None
        if response.is_redirect:
            error = "redirects are not followed"
        elif not ok:
            error = f"HTTP {response.status_code}"
        text = received[:MAX_RECORDED_BODY].decode("utf-8", errors="replace")
        return Outcome(attempt(status_code=response.status_code, error=error, body=text), ok=ok)
