"""The webhook domain's errors, each with its HTTP status."""

from __future__ import annotations

from robotrain.errors import AppError


class WebhookNotFound(AppError):
    status_code = 404
    code = "webhook_not_found"

    def __init__(self, endpoint_id: str):
        super().__init__(f"no webhook endpoint {endpoint_id!r}")


class DeliveryNotFound(AppError):
    status_code = 404
    code = "delivery_not_found"

    def __init__(self, delivery_id: str):
        super().__init__(f"no delivery {delivery_id!r}")


class WebhookUrlRefused(AppError):
    """The URL is not one deliveries may go to (scheme, credentials, or an address that is not public)."""

    status_code = 422
    code = "webhook_url_refused"


class WebhookLimitReached(AppError):
    status_code = 409
    code = "webhook_limit_reached"
