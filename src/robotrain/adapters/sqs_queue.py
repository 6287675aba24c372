"""The JobQueue port on Amazon SQS (boto3). The only module of the service that imports boto3.

Facts it relies on (the AWS SQS developer guide): long polling up to 20 s needs an HTTP read timeout longer than
the wait; batch calls take at most 10 entries and answer HTTP 200 even when some entries `Failed`; the body limit is
1 MiB counted in UTF-8 bytes (moto counts characters, so the check is ours); a dead-letter queue with a redrive policy
catches poison messages after `maxReceiveCount` receives.

FIFO queues (a URL ending in `.fifo`) work too. Every send carries a `MessageGroupId` and a
`MessageDeduplicationId`, which FIFO requires: the group is derived from the body, so messages about one job are
ordered among themselves while one job's message in flight (or hidden for a backoff) never holds back another
job's; the deduplication id is new for every send() and kept across this adapter's retries of that send, so a
retried request is delivered once while a deliberate re-send (the drain's refresh, the sweep's outbox) is delivered
too. The consumers are idempotent either way (compare-and-set on the job row), so nothing relies on FIFO's
exactly-once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from robotrain.errors import QueueUnavailable
from robotrain.ports import MAX_MESSAGE_BYTES, MessageTooLarge, QueueMessage, ReceiptHandleInvalid

log = logging.getLogger(__name__)

# Network-level failures: the request may not have reached SQS, or its answer was lost. Safe to repeat, because the
# queue is at-least-once anyway (a repeated send is one more duplicate the consumer already tolerates).
TRANSIENT_ERRORS = (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)

# Error codes SQS answers when it is overloaded or failing; any 5xx counts as well.
TRANSIENT_ERROR_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "RequestThrottled",
        "RequestThrottleException",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "RequestTimeout",
        "KmsThrottled",
    }
)

# The queue is missing or we may not use it: retrying cannot help, an operator must fix the setup.
CONFIGURATION_ERROR_CODES = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "InvalidSecurity",
        "ExpiredToken",
        "InvalidAddress",
        "KmsAccessDenied",
        "KmsDisabled",
        "KmsNotFound",
        "KmsInvalidState",
        "KmsInvalidKeyUsage",
        "OverLimit",
    }
)

RECEIPT_HANDLE_ERROR_CODES = frozenset({"ReceiptHandleIsInvalid", "MessageNotInflight", "InvalidReceiptHandle"})
# What ChangeMessageVisibility answers for a receipt handle that has expired (the message was received again, or its
# visibility ran out): not a modelled error but the common `InvalidParameterValue`, "Value ... for parameter
# ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change." (or
# "The receipt handle has expired."). The timeout is range-checked before the call, so the only other cause, the
# 12-hour total visibility of one message, also means "this delivery can no longer be re-hidden".
STALE_VISIBILITY_ERROR_CODES = frozenset({*RECEIPT_HANDLE_ERROR_CODES, "InvalidParameterValue"})

MAX_BATCH = 10
MAX_WAIT_SECONDS = 20
MAX_VISIBILITY_TIMEOUT_S = 43_200

# SQS accepts only XML-valid characters in a body (AWS, "Amazon SQS message quotas").
_INVALID_BODY_CHARS = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _error_code(error: botocore.exceptions.ClientError) -> str:
    details = error.response.get("Error", {})
    return str(details.get("QueryErrorCode") or details.get("Code") or "")


def _error_codes(error: botocore.exceptions.ClientError) -> set[str]:
    details = error.response.get("Error", {})
    return {str(details.get("QueryErrorCode") or ""), str(details.get("Code") or "")} - {""}


def _http_status(error: botocore.exceptions.ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def is_transient(error: BaseException) -> bool:
    """Whether repeating the same call later may succeed."""
    if isinstance(error, TRANSIENT_ERRORS):
        return True
    if isinstance(error, botocore.exceptions.ClientError):
        return bool(_error_codes(error) & TRANSIENT_ERROR_CODES) or _http_status(error) >= 500
    return False


# botocore keeps 10 connections per client by default: more concurrent sends than that (an API process serves many
# requests at once) would each open and discard a connection, with a "Connection pool is full" warning.
DEFAULT_POOL_CONNECTIONS = 64


def client_config(
    *,
    max_wait_seconds: float = MAX_WAIT_SECONDS,
    connect_timeout_s: float = 3.0,
    pool_connections: int = DEFAULT_POOL_CONNECTIONS,
) -> Config:
    """botocore settings for the queue: the read timeout outlasts the longest long poll; botocore's own retries are
    off because SqsJobQueue retries the errors it classifies as transient, once, in one place; one pool of
    keep-alive connections shared by every thread of the process."""
    return Config(
        connect_timeout=connect_timeout_s,
        read_timeout=max_wait_seconds + 10,
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=pool_connections,
    )


_session: boto3.session.Session | None = None
_session_lock = threading.Lock()


def make_client(
    *, region: str, endpoint_url: str | None = None, config: Config | None = None, **credentials: str
) -> Any:
    """A boto3 SQS client. Credentials come from the usual AWS chain unless passed.

    Clients come from one shared session, which parses the SQS service model once (a new session per client costs
    about half a second of CPU); creating clients from a session is not thread-safe, hence the lock. The clients
    themselves are safe to share between threads."""
    global _session
    with _session_lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session.client(
            "sqs", region_name=region, endpoint_url=endpoint_url, config=config or client_config(), **credentials
        )


class SqsJobQueue:
    """JobQueue on one SQS queue. Its dead-letter queue and redrive policy belong to the queue's setup
    (create_queue_with_dlq), so `max_receives` is enforced by SQS itself."""

    def __init__(
        self,
        queue_url: str,
        *,
        region: str,
        endpoint_url: str | None = None,
        visibility_timeout_s: int = 60,
        connect_timeout_s: float = 3.0,
        max_attempts: int = 3,
        backoff_s: float = 0.2,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        pool_connections: int = DEFAULT_POOL_CONNECTIONS,
        client: Any | None = None,
    ):
        """`visibility_timeout_s` applies when receive() is not given one. The HTTP read timeout is sized for the
        longest long poll SQS allows (20 s), so any receive() wait the port allows is safe."""
        if not 0 <= visibility_timeout_s <= MAX_VISIBILITY_TIMEOUT_S:
            raise ValueError(f"visibility_timeout_s must be 0-{MAX_VISIBILITY_TIMEOUT_S}, got {visibility_timeout_s}")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.queue_url = queue_url
        self.fifo = queue_url.rstrip("/").endswith(".fifo")
        self.visibility_timeout_s = visibility_timeout_s
        self.max_message_bytes = max_message_bytes
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._client = client or make_client(
            region=region,
            endpoint_url=endpoint_url,
            config=client_config(connect_timeout_s=connect_timeout_s, pool_connections=pool_connections),
        )

    @classmethod
    def from_settings(cls, settings: Any) -> SqsJobQueue:
        if not settings.uses_sqs:
            raise ValueError("SQS_QUEUE_URL and AWS_REGION must both be set to use the SQS queue")
        return cls(
            settings.sqs_queue_url,
            region=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url_sqs,
            visibility_timeout_s=settings.queue_visibility_timeout_s,
            pool_connections=settings.pool_connections,
        )

    # --- JobQueue ----------------------------------------------------------------------------------------------

    def send(self, body: str) -> str:
        size = len(body.encode("utf-8"))
        if size > self.max_message_bytes:
            raise MessageTooLarge(
                f"message body is {size} bytes in UTF-8; SQS accepts at most {self.max_message_bytes}"
            )
        bad = _INVALID_BODY_CHARS.search(body)
        if bad:
            raise ValueError(f"message body contains {bad.group()!r} at {bad.start()}, which SQS does not accept")
        fifo: dict[str, str] = {}
        if self.fifo:
            fifo = {
                "MessageGroupId": hashlib.sha256(body.encode("utf-8")).hexdigest(),
                "MessageDeduplicationId": uuid.uuid4().hex,
            }
        answer = self._call("send_message", QueueUrl=self.queue_url, MessageBody=body, **fifo)
        return str(answer["MessageId"])

    def receive(
        self, *, max_messages: int = 10, visibility_timeout: int | None = None, wait_seconds: float = 0
    ) -> list[QueueMessage]:
        if not 1 <= max_messages <= MAX_BATCH:
            raise ValueError(f"max_messages must be 1-{MAX_BATCH}, got {max_messages}")
        visibility = self.visibility_timeout_s if visibility_timeout is None else visibility_timeout
        if not 0 <= visibility <= MAX_VISIBILITY_TIMEOUT_S:
            raise ValueError(f"visibility_timeout must be 0-{MAX_VISIBILITY_TIMEOUT_S}, got {visibility}")
        if not 0 <= wait_seconds <= MAX_WAIT_SECONDS:
            raise ValueError(f"wait_seconds must be 0-{MAX_WAIT_SECONDS}, got {wait_seconds}")
        answer = self._call(
            "receive_message",
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max_messages,
            VisibilityTimeout=int(visibility),
            # SQS takes whole seconds; rounding up never returns before the caller's wait is over.
            WaitTimeSeconds=math.ceil(wait_seconds),
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
        )
        return [
            QueueMessage(
                message_id=m["MessageId"],
                receipt_handle=m["ReceiptHandle"],
                body=m["Body"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
            )
            for m in answer.get("Messages", [])
        ]

    def delete(self, receipt_handles: list[str]) -> list[str]:
        failed: list[str] = []
        for start in range(0, len(receipt_handles), MAX_BATCH):
            chunk = receipt_handles[start : start + MAX_BATCH]
            answer = self._call(
                "delete_message_batch",
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(chunk)],
            )
            # HTTP 200 can still carry failed entries (an invalid or expired handle): report them, never raise,
            # so one bad handle does not stop the rest of the drain.
            for entry in answer.get("Failed", []):
                failed.append(chunk[int(entry["Id"])])
                log.warning("SQS could not delete a message: %s %s", entry.get("Code"), entry.get("Message", ""))
        return failed

    def change_visibility(self, receipt_handle: str, timeout_seconds: int) -> None:
        if not 0 <= timeout_seconds <= MAX_VISIBILITY_TIMEOUT_S:
            raise ValueError(f"timeout_seconds must be 0-{MAX_VISIBILITY_TIMEOUT_S}, got {timeout_seconds}")
        try:
            self._call(
                "change_message_visibility",
                QueueUrl=self.queue_url,
                ReceiptHandle=receipt_handle,
                VisibilityTimeout=int(timeout_seconds),
            )
        except botocore.exceptions.ClientError as error:
            if _error_codes(error) & STALE_VISIBILITY_ERROR_CODES:
                raise ReceiptHandleInvalid(f"receipt handle is invalid or stale: {_message(error)}") from None
            raise

    # --- extras ------------------------------------------------------------------------------------------------

    def ping(self) -> None:
        """One cheap call (the queue's ARN) for readiness checks; QueueUnavailable when SQS does not answer."""
        self._call("get_queue_attributes", QueueUrl=self.queue_url, AttributeNames=["QueueArn"])

    def approximate_depth(self) -> dict[str, int]:
        """Visible, in-flight and delayed message counts (approximate, as SQS reports them)."""
        names = {
            "ApproximateNumberOfMessages": "visible",
            "ApproximateNumberOfMessagesNotVisible": "in_flight",
            "ApproximateNumberOfMessagesDelayed": "delayed",
        }
        answer = self._call("get_queue_attributes", QueueUrl=self.queue_url, AttributeNames=list(names))
        return {label: int(answer.get("Attributes", {}).get(name, 0)) for name, label in names.items()}

    # --- one place that talks to SQS -----------------------------------------------------------------------------

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """Call SQS; repeat TRANSIENT errors up to `max_attempts` times with jittered backoff; turn configuration
        errors and exhausted retries into QueueUnavailable. Receipt-handle and parameter errors pass through as
        ClientError for the caller to map."""
        for attempt in range(1, self._max_attempts + 1):
            try:
                return getattr(self._client, operation)(**params)
            except botocore.exceptions.NoCredentialsError:
                raise QueueUnavailable(
                    "no AWS credentials found for the SQS queue (set AWS_ACCESS_KEY_ID, ...)"
                ) from None
            except (botocore.exceptions.ClientError, *TRANSIENT_ERRORS) as error:
                if not is_transient(error):
                    if isinstance(error, botocore.exceptions.ClientError) and (
                        _error_codes(error) & CONFIGURATION_ERROR_CODES
                    ):
                        raise QueueUnavailable(
                            f"SQS queue {self.queue_url} cannot be used: {_error_code(error)}: {_message(error)}"
                        ) from None
                    raise
                if attempt == self._max_attempts:
                    raise QueueUnavailable(
                        f"SQS did not answer {operation} after {attempt} attempts: {_describe(error)}"
                    ) from None
                delay = self._backoff_s * 2 ** (attempt - 1)
                log.info("SQS %s failed (%s); retrying in %.2fs", operation, _describe(error), delay)
                time.sleep(delay * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable")  # the loop returns or raises


def _message(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", "")).strip()


def _describe(error: BaseException) -> str:
    if isinstance(error, botocore.exceptions.ClientError):
        return f"{_error_code(error)} (HTTP {_http_status(error)}) {_message(error)}".strip()
    return f"{type(error).__name__}: {error}"


def create_queue_with_dlq(
    client_or_params: Any | Mapping[str, Any],
    name: str,
    max_receive_count: int,
    *,
    visibility_timeout_s: int | None = None,
    receive_wait_s: int | None = None,
    dlq_retention_s: int = 14 * 24 * 3600,
) -> tuple[str, str]:
    """Create `name` and its dead-letter queue `<name>-dlq` (FIFO-aware) with a redrive policy that moves a message
    there once it has been received more than `max_receive_count` times. Idempotent when the attributes match.
    `client_or_params` is a boto3 SQS client or the keyword arguments for make_client (region, endpoint_url, ...).
    Returns (queue_url, dlq_url)."""
    if max_receive_count < 1:
        raise ValueError("max_receive_count must be at least 1")
    client = make_client(**client_or_params) if isinstance(client_or_params, Mapping) else client_or_params
    fifo = name.endswith(".fifo")
    base = name[: -len(".fifo")] if fifo else name
    dlq_name = f"{base}-dlq.fifo" if fifo else f"{base}-dlq"
    fifo_attributes = {"FifoQueue": "true"} if fifo else {}

    # The DLQ keeps messages longer than the source: for standard queues the original enqueue time carries over.
    dlq_url = client.create_queue(
        QueueName=dlq_name, Attributes={"MessageRetentionPeriod": str(dlq_retention_s), **fifo_attributes}
    )["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    attributes = {
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}),
        **fifo_attributes,
    }
    if visibility_timeout_s is not None:
        attributes["VisibilityTimeout"] = str(visibility_timeout_s)
    if receive_wait_s is not None:
        attributes["ReceiveMessageWaitTimeSeconds"] = str(receive_wait_s)
    queue_url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return queue_url, dlq_url
