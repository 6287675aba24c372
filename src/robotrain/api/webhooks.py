"""The webhook routes: register, list, delete an endpoint, rotate its secret, list its deliveries (with every
attempt), redeliver one. Thin: parse, authorize, call the WebhookService."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from robotrain.api.deps import CurrentUser
from robotrain.api.schemas import ErrorBody
from robotrain.errors import ServiceUnavailable
from robotrain.webhooks.models import Delivery, DeliveryAttempt, DeliveryStatus, WebhookEndpoint, WebhookEventType
from robotrain.webhooks.service import WebhookService


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, description="https URL that receives the events (POST, JSON, signed)")
    events: list[WebhookEventType] | None = Field(
        None, min_length=1, description="Event types to receive; all of them when omitted"
    )


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[WebhookEventType]
    created_at: datetime

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> WebhookOut:
        return cls(id=endpoint.id, url=endpoint.url, events=endpoint.events, created_at=endpoint.created_at)


class WebhookWithSecret(WebhookOut):
    secret: str = Field(description="`whsec_…`: verifies the webhook-signature header (Standard Webhooks)")

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> WebhookWithSecret:
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            events=endpoint.events,
            created_at=endpoint.created_at,
            secret=endpoint.secret,
        )


class WebhookList(BaseModel):
    data: list[WebhookOut]


class DeliveryOut(BaseModel):
    id: str
    webhook_id: str = Field(description="The webhook-id header: the same on every attempt")
    type: WebhookEventType
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    payload: dict
    history: list[DeliveryAttempt]

    @classmethod
    def of(cls, delivery: Delivery) -> DeliveryOut:
        return cls(
            id=delivery.id,
            webhook_id=delivery.message_id,
            type=delivery.type,
            status=delivery.status,
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at,
            created_at=delivery.created_at,
            payload=delivery.payload,
            history=delivery.history,
        )


class DeliveryList(BaseModel):
    data: list[DeliveryOut]


def get_webhook_service(request: Request) -> WebhookService:
    service = request.app.state.webhook_service
    if service is None:
        raise ServiceUnavailable("webhooks are not configured on this server")
    return service


WebhookServiceDep = Annotated[WebhookService, Depends(get_webhook_service)]
webhooks_router = APIRouter(prefix="/webhooks", tags=["webhooks"])


def _errors(*codes: int) -> dict[int | str, dict]:
    return {code: {"model": ErrorBody} for code in codes}


@webhooks_router.post("", status_code=201, response_model=WebhookWithSecret, responses=_errors(401, 409, 422, 503))
def create_webhook(body: WebhookIn, user: CurrentUser, service: WebhookServiceDep) -> WebhookWithSecret:
    return WebhookWithSecret.of(service.create(user, body.url, body.events))


@webhooks_router.get("", response_model=WebhookList, responses=_errors(401, 503))
def list_webhooks(user: CurrentUser, service: WebhookServiceDep) -> WebhookList:
    return WebhookList(data=[WebhookOut.of(endpoint) for endpoint in service.list_endpoints(user)])


@webhooks_router.get("/{webhook_id}", response_model=WebhookOut, responses=_errors(401, 404, 503))
def get_webhook(webhook_id: str, user: CurrentUser, service: WebhookServiceDep) -> WebhookOut:
    return WebhookOut.of(service.get(user, webhook_id))


@webhooks_router.delete("/{webhook_id}", status_code=204, responses=_errors(401, 404, 503))
def delete_webhook(webhook_id: str, user: CurrentUser, service: WebhookServiceDep) -> Response:
    service.delete(user, webhook_id)
    return Response(status_code=204)


@webhooks_router.post("/{webhook_id}/rotate-secret", response_model=WebhookWithSecret, responses=_errors(401, 404, 503))
def rotate_webhook_secret(webhook_id: str, user: CurrentUser, service: WebhookServiceDep) -> WebhookWithSecret:
    return WebhookWithSecret.of(service.rotate_secret(user, webhook_id))


@webhooks_router.get("/{webhook_id}/deliveries", response_model=DeliveryList, responses=_errors(401, 404, 422, 503))
def list_deliveries(
    webhook_id: str,
    user: CurrentUser,
    service: WebhookServiceDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> DeliveryList:
    return DeliveryList(data=[DeliveryOut.of(d) for d in service.deliveries(user, webhook_id, limit=limit)])


@webhooks_router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryOut,
    responses=_errors(401, 404, 503),
)
def redeliver(webhook_id: str, delivery_id: str, user: CurrentUser, service: WebhookServiceDep) -> DeliveryOut:
    return DeliveryOut.of(service.redeliver(user, webhook_id, delivery_id))
