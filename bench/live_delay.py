"""Delay from a store write to the one who is told: a metric point reaching the dashboard in a browser (and a plain
SSE client), and a status change reaching a webhook receiver. p50 and p99, each also as a ratio to a baseline
measured in the same run.

    .venv/bin/python bench/live_delay.py [--points 60] [--events 20] [--supabase]

1. stream: the API (uvicorn on 127.0.0.1, a thread) over a store; a running job; its page open in Debian's headless
   Chromium (Playwright), which reports when each point arrives (the dashboard's `robotrain:metrics` event), and a
   Python SSE client (httpx-sse) on the same stream. Points are written to the store at random moments; the delay is
   the arrival time minus the write time (one clock: the same machine). The baseline is the stream's poll interval
   (ROBOTRAIN_STREAM_POLL_INTERVAL_S): cursor polling alone makes a mean delay of half of it.
   With --supabase the store is PostgreSQL 15 behind the PostgREST-subset server the tests use (on 127.0.0.1; a
   hosted Supabase adds its network round trip to each poll).
2. webhooks: the control plane's DispatchLoop (its tick runs the relay) at ROBOTRAIN_DRAIN_INTERVAL_S; status events
   written by the lifecycle; a receiver on 127.0.0.1 that records arrival. The baseline is the tick interval (a
   mean delay of half of it is what ticking alone makes); one signed POST to the receiver is printed beside it.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from httpx_sse import connect_sse  # noqa: E402

from robotrain.auth.local_keys import LocalKeys  # noqa: E402
from robotrain.control import Dispatcher, DispatchLoop  # noqa: E402
from robotrain.control.webhooks import WebhookRelay  # noqa: E402
from robotrain.jobs.lifecycle import apply_transition  # noqa: E402
from robotrain.jobs.models import JobStatus, MetricPoint, utcnow  # noqa: E402
from robotrain.jobs.service import JobService  # noqa: E402
from robotrain.ports import Components  # noqa: E402
from robotrain.settings import Settings  # noqa: E402
from robotrain.webhooks.delivery import WebhookSender  # noqa: E402
from robotrain.webhooks.models import Delivery, WebhookEventType, new_delivery_id  # noqa: E402
from robotrain.webhooks.service import WebhookService  # noqa: E402
from robotrain.wiring import build_components, build_verifier  # noqa: E402
from tests.support.app import api_app  # noqa: E402
from tests.support.components import FakeLauncher, fast_spec  # noqa: E402

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


def report(name: str, delays_s: list[float], baseline_s: float, baseline_name: str) -> None:
    p50, p99 = percentiles(delays_s)
    print(
        f"{name:<34} n={len(delays_s):<3} p50 {p50 * 1000:7.0f} ms  p99 {p99 * 1000:7.0f} ms  "
        f"({p50 / baseline_s:.2f}x / {p99 / baseline_s:.2f}x {baseline_name} {baseline_s * 1000:.0f} ms)"
    )


@contextmanager
def serve(components: Components) -> Iterator[str]:
    config = uvicorn.Config(
        api_app(components, verifier=build_verifier(components.settings)), host="127.0.0.1", port=0, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def running_job(components: Components, user: str) -> str:
    store = components.store
    job = JobService(components).submit(user, fast_spec())
    starting = store.claim(job.id, max_active=100, max_active_per_user=100)
    running = apply_transition(store, starting, JobStatus.RUNNING)
    assert running is not None
    return job.id


def measure_stream(components: Components, points: int) -> tuple[list[float], list[float]]:
    """(browser delays, SSE client delays) for `points` metric points written at random moments."""
    from playwright.sync_api import sync_playwright

    user = "bench"
    token = LocalKeys(components.settings.data_dir).mint(user)
    job_id = running_job(components, user)
    written: dict[int, float] = {}
    client_seen: dict[int, float] = {}
    with serve(components) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{url}/")
        page.get_by_label("Access token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector("table")
        page.goto(f"{url}/#/jobs/{job_id}")
        page.evaluate(
            """() => { window.__seen = {}; window.addEventListener('robotrain:metrics', (e) => {
                for (const [step] of (e.detail.series['train/loss'] || [])) window.__seen[step] = Date.now() / 1000; }); }"""
        )
        page.wait_for_selector('[data-chart="Loss"]')

        def sse_client() -> None:
            headers = {"Authorization": f"Bearer {token}"}
            with (
                httpx.Client(base_url=url, headers=headers, timeout=30) as http,
                connect_sse(http, "GET", f"/jobs/{job_id}/events") as source,
            ):
                for event in source.iter_sse():
                    if event.event == "metrics":
                        now = time.time()
                        for step, _ in event.json()["series"].get("train/loss", []):
                            client_seen.setdefault(step, now)
                    if len(client_seen) >= points:
                        return

        reader = threading.Thread(target=sse_client, daemon=True)
        reader.start()
        time.sleep(1.0)  # both streams open and past their first poll
        for step in range(1, points + 1):
            time.sleep(random.uniform(0.05, 0.6))
            written[step] = time.time()
            components.store.append_metrics(job_id, [MetricPoint(step=step, name="train/loss", value=1.0 / step)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            seen = page.evaluate("() => window.__seen")
            if len(seen) >= points and len(client_seen) >= points:
                break
            time.sleep(0.2)
        reader.join(timeout=5)
        browser.close()
    browser_delays = [float(seen[str(step)]) - written[step] for step in written if str(step) in seen]
    client_delays = [client_seen[step] - written[step] for step in written if step in client_seen]
    return browser_delays, client_delays


class Receiver:
    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["content-length"]))
                receiver.arrivals.setdefault(self.headers["webhook-id"], time.time())
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def measure_webhooks(components: Components, events: int) -> tuple[list[float], float]:
    receiver = Receiver()
    hooks = WebhookService(components.webhooks, components.settings)
    endpoint = hooks.create("bench", receiver.url, [WebhookEventType.JOB_CANCELLED])
    # baseline: one signed POST straight to the receiver
    sender = WebhookSender(components.settings)
    now = utcnow()
    one = Delivery(
        id=new_delivery_id(),
        endpoint_id=endpoint.id,
        event_id=0,
        type=WebhookEventType.JOB_CANCELLED,
        payload={"type": "job.cancelled", "data": {}},
        retry_until=now,
        created_at=now,
        updated_at=now,
    )
    posts = []
    for _ in range(10):
        started = time.time()
        sender.send(endpoint, one, utcnow())
        posts.append(time.time() - started)
    sender.close()

    loop = DispatchLoop(Dispatcher(components, relay=WebhookRelay(components)), components.settings.drain_interval_s)
    loop.start()
    service = JobService(components)
    written: dict[str, float] = {}
    try:
        for _ in range(events):
            job = service.submit("bench", fast_spec())
            time.sleep(random.uniform(0.1, 1.0))
            written_at = time.time()
            cancelled = service.cancel("bench", job.id)
            event = components.store.list_events(job.id)[-1]
            assert cancelled.status is JobStatus.CANCELLED
            written[f"msg_{event.id}"] = written_at
        deadline = time.monotonic() + 30
        while len([m for m in written if m in receiver.arrivals]) < events and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        loop.stop()
        receiver.server.shutdown()
    return [receiver.arrivals[m] - t for m, t in written.items() if m in receiver.arrivals], statistics.median(posts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=60)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--supabase", action="store_true", help="also measure the stream on PostgreSQL + PostgREST")
    args = parser.parse_args()
    random.seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "sqlite", webhook_allow_private=True, max_active_jobs_per_user=10_000)
        components = build_components(settings, launcher=FakeLauncher())
        interval = settings.stream_poll_interval_s
        browser, client = measure_stream(components, args.points)
        report("metric -> browser (SQLite)", browser, interval, "poll interval")
        report("metric -> SSE client (SQLite)", client, interval, "poll interval")
        if args.supabase:
            for name, delays in measure_supabase(Path(tmp), args.points).items():
                report(name, delays, interval, "poll interval")
        delays, post = measure_webhooks(components, args.events)
        report("status change -> webhook receiver", delays, settings.drain_interval_s, "dispatch tick")
        print(f"  one signed POST to the receiver alone: {post * 1000:.1f} ms (the rest is waiting for the tick)")
    return 0


def measure_supabase(tmp: Path, points: int) -> dict[str, list[float]]:
    from tests.support import postgres, postgrest
    from tests.support.supabase_env import JWT_SECRET

    with postgres.cluster(port=5439) as cluster:
        postgres.create_database(cluster, "bench")
        subset = postgrest.PostgrestSubset(cluster.conninfo("bench", user="authenticator"), JWT_SECRET)
        with postgrest.serve(subset) as server:
            settings = Settings(
                data_dir=tmp / "supabase",
                SUPABASE_URL=server.url,
                SUPABASE_KEY=postgrest.mint_jwt(JWT_SECRET, "service_role"),
            )
            components = build_components(settings, launcher=FakeLauncher())
            browser, client = measure_stream(components, points)
    return {"metric -> browser (PostgREST)": browser, "metric -> SSE client (PostgREST)": client}


if __name__ == "__main__":
    sys.exit(main())
