"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright, against a real `robotrain serve`
(subprocess, temp data dir, real training in worker processes). Submit a job from the form and watch its loss curve
gain points, open the finished job and play its rollout, cancel another job and see it cancelled, compare two jobs,
and check that bob's browser cannot see alice's jobs. No console errors on any page (apart from the HTTP errors a
test provokes on purpose). Screenshots go to test-artifacts/dashboard/.

One server and one browser for the module; the tests run in order and share them."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from robotrain.auth.local_keys import LocalKeys

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
# Known to work on these machines: without the background-networking flags Chromium's own connections are refused.
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
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
BIN = Path(sys.executable).parent
# Long enough for the curve to be seen growing (a point every 20 steps), short enough for a shared CPU.
CURVE_SPEC_STEPS = 500
LONG_SPEC: dict[str, Any] = {
    "name": "long run to cancel",
    "policy": {"type": "mlp", "hidden_dims": [32, 32]},
    "dataset": {"uri": "builtin://push2d?episodes=4"},
    "training": {"steps": 200000, "batch_size": 16, "log_every": 50, "device": "cpu"},
    "eval": {"env": None},
}
SHORT_SPEC: dict[str, Any] = {
    **LONG_SPEC,
    "name": "short run",
    "training": {**LONG_SPEC["training"], "steps": 300, "log_every": 20},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.2)


@dataclass
class Stack:
    url: str
    data_dir: Path
    tokens: dict[str, str]
    shared: dict[str, str] = field(default_factory=dict)  # job ids the tests hand on

    def api(self, user: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[user]}"}, timeout=10)

    def job(self, user: str, job_id: str) -> dict[str, Any]:
        with self.api(user) as client:
            return client.get(f"/jobs/{job_id}").json()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("dashboard") / "data"
    keys = LocalKeys(data_dir)
    tokens = {user: keys.mint(user) for user in ("alice", "bob")}
    port = free_port()
    env = {
        **os.environ,
        "ROBOTRAIN_DATA_DIR": str(data_dir),
        "ROBOTRAIN_PORT": str(port),
        "ROBOTRAIN_STREAM_POLL_INTERVAL_S": "0.2",
        "ROBOTRAIN_DRAIN_INTERVAL_S": "0.5",
        "ROBOTRAIN_PROGRESS_INTERVAL_S": "0.5",
        "ROBOTRAIN_LOG_LEVEL": "WARNING",
        "ROBOTRAIN_MAX_CONCURRENT_JOBS": "2",  # the short job trains beside the one submitted from the form
    }
    log = (data_dir.parent / "server.log").open("w")
    server = subprocess.Popen([str(BIN / "robotrain"), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, 60, "robotrain serve to answer")
        running = Stack(url=url, data_dir=data_dir, tokens=tokens)
        with running.api("alice") as client:  # starts now, so it has ended by the time the compare test needs it
            running.shared["short"] = client.post("/jobs", json=SHORT_SPEC).json()["id"]
        yield running
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/test-services.sh installs it)")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Browser:
    """One user's browser context, signed in, with every console error and page error collected."""

    def __init__(self, browser: Any, stack: Stack, user: str):
        self.context = browser.new_context(viewport={"width": 1366, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.goto(f"{stack.url}/")
        self.page.get_by_label("Access token").fill(stack.tokens[user])
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page.get_by_role("heading", name="Jobs")).to_be_visible()

    def open(self, stack: Stack, route: str) -> None:
        self.page.goto(f"{stack.url}/#{route}")

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")

    def assert_no_console_errors(self, allowed: str | None = None) -> None:
        unexpected = [e for e in self.errors if not (allowed and re.search(allowed, e))]
        assert unexpected == [], unexpected

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def alice(browser: Any, stack: Stack) -> Iterator[Browser]:
    signed_in = Browser(browser, stack, "alice")
    yield signed_in
    signed_in.close()


def test_a_job_submitted_from_the_form_shows_field_errors_then_a_growing_loss_curve(alice: Browser, stack: Stack):
    page = alice.page
    alice.open(stack, "/submit")
    page.get_by_label("Steps", exact=True).fill("-5")
    page.get_by_role("button", name="Submit job").click()
    steps = page.get_by_label("Steps", exact=True)
    expect(steps).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-training-steps-error")).to_contain_text("greater than")
    expect(page.locator("#submit-errors")).to_contain_text("training.steps")
    alice.shot("submit-422")

    page.get_by_label("Name").fill("curve from the form")
    page.get_by_label("Dataset URI").fill("builtin://push2d?episodes=4")
    steps.fill(str(CURVE_SPEC_STEPS))
    page.get_by_label("Batch size").fill("16")
    page.get_by_label("Log every (steps)").fill("10")
    # Evaluated in push2d, so the finished job has real rollout videos (the next test plays one).
    page.get_by_label("Evaluation env").select_option("push2d")
    page.get_by_label("Evaluation episodes").fill("4")
    page.get_by_role("button", name="Submit job").click()
    expect(page.get_by_role("heading", name="curve from the form")).to_be_visible()
    job_id = re.search(r"#/jobs/(job_\w+)", page.url).group(1)
    stack.shared["curve"] = job_id

    loss = page.locator('[data-chart="Loss"]')
    first = wait_for(
        lambda: int(loss.get_attribute("data-points") or 0) >= 2 and int(loss.get_attribute("data-points")),
        120,
        "the first loss points",
    )
    alice.shot("live-curve")
    grown = wait_for(
        lambda: int(loss.get_attribute("data-points") or 0) > first and int(loss.get_attribute("data-points")),
        60,
        "more loss points",
    )
    assert grown > first
    expect(page.locator("canvas").first).to_be_visible()
    wait_for(lambda: stack.job("alice", job_id)["status"] in ("succeeded", "failed"), 180, "the job to end")
    expect(page.locator(".status").first).to_have_text("succeeded", timeout=20_000)
    expect(page.locator(".log")).to_contain_text("[status] succeeded")
    alice.assert_no_console_errors(allowed=r"status of 422")


def test_a_finished_job_plays_its_rollout_video(alice: Browser, stack: Stack):
    job_id = stack.shared["curve"]
    videos = stack.job("alice", job_id)["result"]["videos"]
    assert videos and all(path.startswith("eval/videos/") for path in videos)  # the evaluation's own rollouts
    alice.errors.clear()
    alice.open(stack, "/jobs")
    alice.open(stack, f"/jobs/{job_id}")
    video = alice.page.locator("video").first
    expect(video).to_have_attribute("src", re.compile(r"^blob:"), timeout=20_000)
    alice.page.wait_for_function("() => document.querySelector('video').readyState >= 2", timeout=20_000)
    alice.page.evaluate("() => { const v = document.querySelector('video'); v.muted = true; return v.play(); }")
    alice.page.wait_for_function("() => document.querySelector('video').currentTime > 0", timeout=20_000)
    video.scroll_into_view_if_needed()
    alice.shot("rollout")
    alice.assert_no_console_errors()


def test_cancelling_a_job_from_its_page(alice: Browser, stack: Stack):
    with stack.api("alice") as client:
        job = client.post("/jobs", json=LONG_SPEC).json()
    alice.errors.clear()
    alice.open(stack, f"/jobs/{job['id']}")
    expect(alice.page.get_by_role("heading", name="long run to cancel")).to_be_visible()
    alice.page.get_by_role("button", name="Cancel job").click()
    expect(alice.page.locator(".status").first).to_have_text("cancelled", timeout=20_000)
    expect(alice.page.get_by_role("button", name="Retry job")).to_be_visible()
    expect(alice.page.locator(".log")).to_contain_text("cancelled by the user", timeout=20_000)
    assert stack.job("alice", job["id"])["status"] == "cancelled"
    alice.shot("cancelled")
    alice.assert_no_console_errors()


def test_the_jobs_table_and_the_compare_view(alice: Browser, stack: Stack):
    short = stack.shared["short"]
    wait_for(lambda: stack.job("alice", short)["status"] in ("succeeded", "failed"), 180, "the short job to end")
    alice.errors.clear()
    alice.open(stack, "/jobs")
    rows = alice.page.locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(alice.page.locator(f'tr[data-job="{short}"] .status')).to_have_text("succeeded")
    alice.page.get_by_label("Status").select_option("cancelled")
    expect(rows).to_have_count(1)
    alice.page.get_by_label("Status").select_option("")
    expect(rows).to_have_count(3)
    alice.shot("jobs")
    alice.page.get_by_label("Select curve from the form to compare").check()
    alice.page.get_by_label("Select short run to compare").check()
    alice.page.get_by_role("button", name="Compare selected").click()
    chart = alice.page.locator('[data-chart="Train loss"]')
    expect(chart.locator("canvas")).to_be_visible()
    expect(chart.locator(".u-legend")).to_contain_text("short run")
    expect(chart.locator(".u-legend")).to_contain_text("curve from the form")
    assert int(chart.get_attribute("data-points")) > 10
    alice.shot("compare")
    alice.assert_no_console_errors()


def test_bobs_browser_cannot_see_alices_jobs(browser: Any, stack: Stack):
    bob = Browser(browser, stack, "bob")
    try:
        expect(bob.page.get_by_text("No jobs yet")).to_be_visible()
        expect(bob.page.locator("tbody tr")).to_have_count(0)
        bob.open(stack, f"/jobs/{stack.shared['curve']}")
        expect(bob.page.get_by_role("heading", name="Job not found")).to_be_visible()
        bob.shot("bob-isolated")
        bob.assert_no_console_errors(allowed=r"status of 404")
    finally:
        bob.close()
