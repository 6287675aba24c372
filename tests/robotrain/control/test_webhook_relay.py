"""The webhook relay end to end on real components: status events written by the lifecycle become signed deliveries
to a real receiver on 127.0.0.1 (ROBOTRAIN_WEBHOOK_ALLOW_PRIVATE) that verifies each signature with the
standardwebhooks package, answers 500 twice and then 200, and sees exactly one accepted delivery per event id. The
relay's clock is injected, so the backoff is followed without waiting for it."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from robotrain.control.webhooks import WebhookRelay
from robotrain.jobs.lifecycle import apply_transition
from robotrain.jobs.models import JobStatus, utcnow
from robotrain.jobs.service import JobService
from robotrain.ports import Components
from robotrain.settings import Settings
from robotrain.webhooks.models import DeliveryStatus, WebhookEventType
from robotrain.webhooks.service import WebhookService
from robotrain.wiring import build_components
from tests.support.components import FakeLauncher, fast_spec


class Receiver:
    """Verifies every request's signature; answers 500 to the first `failures` tries of each webhook-id, then 200."""

    def __init__(self, failures: int = 2) -> None:
        self.secret = ""
        self.failures = failures
        self.tries: Counter[str] = Counter()
        self.accepted: list[tuple[str, dict]] = []
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                try:
                    payload = Webhook(receiver.secret).verify(body, dict(self.headers))
                except WebhookVerificationError:
                    receiver.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                message_id = self.headers["webhook-id"]
                receiver.tries[message_id] += 1
                if receiver.tries[message_id] <= receiver.failures:
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"try again")
                    return
                receiver.accepted.append((message_id, payload))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/robotrain"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@pytest.fixture
def components(tmp_path: Path) -> Components:
    settings = Settings(data_dir=tmp_path / "data", webhook_allow_private=True, webhook_retry_for_s=30)
    return build_components(settings, launcher=FakeLauncher())


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/nobody"


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


def test_status_changes_are_delivered_signed_retried_and_accepted_once(components: Components, receiver) -> None:
    hooks = WebhookService(components.webhooks, components.settings)
    everything = hooks.create("alice", receiver.url, None)
    receiver.secret = everything.secret
    hooks.create("alice", receiver.url, [WebhookEventType.JOB_FAILED])  # hears nothing here
    unreachable = hooks.create("alice", closed_port_url(), [WebhookEventType.JOB_SUCCEEDED])
    hooks.create("bob", receiver.url, None)  # bob's endpoint never hears of alice's job

    store = components.store
    job = JobService(components).submit("alice", fast_spec())
    starting = store.claim(job.id, max_active=5, max_active_per_user=5)
    running = apply_transition(store, starting, JobStatus.RUNNING)
    done = apply_transition(store, running, JobStatus.SUCCEEDED, result={"eval": {"pc_success": 80.0}})
    assert done is not None

    clock = Clock()
    relay = WebhookRelay(components, now=clock)
    first = relay.run_once()
    assert first.queued == 3 and len(first.retrying) == 3  # running + succeeded to one endpoint, succeeded to another
    clock.now += timedelta(seconds=5)
    assert len(relay.run_once().retrying) == 3
    clock.now += timedelta(seconds=19)
    assert relay.run_once().sent == 0  # the third try is due 20 s after the second
    clock.now += timedelta(seconds=1)
    third = relay.run_once()
    assert len(third.succeeded) == 2 and len(third.failed) == 1  # the unreachable one ran out of its 30 s window
    clock.now += timedelta(hours=1)
    assert relay.run_once().sent == 0

    assert receiver.bad_signatures == 0
    assert Counter(message_id for message_id, _ in receiver.accepted) == Counter(
        {message_id: 1 for message_id in receiver.tries}
    )
    # sent in parallel, so in either order (receivers order by `timestamp`)
    assert sorted(payload["type"] for _, payload in receiver.accepted) == ["job.running", "job.succeeded"]
    for _, payload in receiver.accepted:
        assert set(payload) == {"type", "timestamp", "data"} and payload["data"]["id"] == job.id
        assert "launch_handle" not in payload["data"]

    assert components.webhooks is not None
    delivered = components.webhooks.list_deliveries(everything.id)
    assert {d.status for d in delivered} == {DeliveryStatus.SUCCEEDED}
    assert [[a.status_code for a in d.history] for d in delivered] == [[500, 500, 200], [500, 500, 200]]
    assert delivered[0].history[0].response_body == "try again"
    gave_up = components.webhooks.list_deliveries(unreachable.id)
    assert [d.status for d in gave_up] == [DeliveryStatus.FAILED]
    assert [a.status_code for a in gave_up[0].history] == [None, None, None]
    assert all("ConnectError" in (a.error or "") for a in gave_up[0].history)

    # a manual redelivery sends it again, signed the same way, under the same webhook-id
    again = hooks.redeliver("alice", everything.id, delivered[0].id)
    clock.now = utcnow()
    assert relay.run_once().succeeded == [again.id]
    assert receiver.accepted[-1][0] == delivered[0].message_id
    assert receiver.accepted[-1][1]["type"] == delivered[0].type.value
    relay.close()
