"""API load bench: requests/s and p50/p99 latency of POST /jobs and GET /jobs/{id} on the embedded server, each as a
ratio to a bare FastAPI endpoint served the same way (uvicorn.run in its own process, 127.0.0.1) in the same run.

    .venv/bin/python bench/api_load.py [--clients 16] [--seconds 5] [--max-requests 3000]

The embedded server is the real app (JWT verification, SQLite store, local queue) with the dispatch loop off, so
no training worker competes with it for the CPU; the submitted jobs are valid and simply stay queued. Everything
lives in a temp dir and both servers are stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

SPEC: dict[str, Any] = {
    "name": "bench",
    "policy": {"type": "mlp"},
    "dataset": {"uri": "builtin://push2d?episodes=30"},
    "training": {"steps": 300, "batch_size": 64},
    "eval": {"env": "push2d", "episodes": 20},
    "compute": {"gpu": "T4"},
}


# --- the two servers (run in child processes of this script) ----------------------------------------------------


def serve_bare(port: int) -> None:
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/bare", status_code=202)
    def bare_post(body: dict[str, Any]) -> dict[str, Any]:
        return {"id": "job_bare", "status": "queued", "spec": body}

    @app.get("/bare/{item_id}")
    def bare_get(item_id: str) -> dict[str, Any]:
        return {"id": item_id, "status": "queued", "spec": SPEC}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def serve_embedded(port: int, data_dir: Path) -> None:
    import uvicorn

    from robotrain.api.app import create_app
    from robotrain.settings import Settings
    from robotrain.wiring import build_components, build_verifier

    # The per-user submit rate limit and active-jobs cap would turn most POSTs into 429s: lift them, so the bench
    # measures accepting jobs (their cost is measured by tests/robotrain/api/test_rate_limit.py, not here).
    settings = Settings(
        data_dir=data_dir,
        host="127.0.0.1",
        port=port,
        submit_rate_per_minute=10**9,
        max_active_jobs_per_user=10**9,
    )
    app = create_app(build_components(settings), verifier=build_verifier(settings))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    def __init__(self, *args: str):
        self.port = _free_port()
        self.process = subprocess.Popen(
            [sys.executable, __file__, *args, "--port", str(self.port)], start_new_session=True
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, path: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                httpx.get(self.url + path, timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError(f"server on {self.url} did not start within {timeout_s}s")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


# --- the load ----------------------------------------------------------------------------------------------------


@dataclass
class Figures:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(
    url: str, method: str, path: str, *, headers: dict[str, str], body: Any, clients: int, seconds: float, cap: int
) -> Figures:
    latencies: list[float] = []
    errors = 0
    issued = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30, limits=limits) as http:

        async def one_client() -> None:
            nonlocal errors, issued
            while time.monotonic() < deadline and issued < cap:
                issued += 1
                started = time.perf_counter()
                response = await http.request(method, path, json=body)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code >= 400:
                    errors += 1

        # Warm-up: connections opened and code paths hot before timing.
        for _ in range(clients):
            await http.request(method, path, json=body)
        began = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    return Figures(len(latencies), errors, elapsed, latencies)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measured phase")
    parser.add_argument("--max-requests", type=int, default=3000, help="per measured phase")
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-embedded", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.port)
        return 0
    if args.serve_embedded:
        serve_embedded(args.port, args.serve_embedded)
        return 0

    from robotrain.auth.local_keys import LocalKeys

    with tempfile.TemporaryDirectory(prefix="robotrain-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        token = LocalKeys(data_dir).mint("bench-user", ttl_s=3600)
        auth = {"Authorization": f"Bearer {token}"}
        bare = ServerProcess("--serve-bare")
        embedded = ServerProcess("--serve-embedded", str(data_dir))
        try:
            bare.wait_ready("/bare/x")
            embedded.wait_ready("/healthz")
            job_id = httpx.post(embedded.url + "/jobs", json=SPEC, headers=auth, timeout=30).json()["id"]
            common = {"clients": args.clients, "seconds": args.seconds, "cap": args.max_requests}
            phases = {
                "POST /jobs": (
                    asyncio.run(load(bare.url, "POST", "/bare", headers={}, body=SPEC, **common)),
                    asyncio.run(load(embedded.url, "POST", "/jobs", headers=auth, body=SPEC, **common)),
                ),
                "GET /jobs/{id}": (
                    asyncio.run(load(bare.url, "GET", f"/bare/{job_id}", headers={}, body=None, **common)),
                    asyncio.run(load(embedded.url, "GET", f"/jobs/{job_id}", headers=auth, body=None, **common)),
                ),
            }
        finally:
            bare.stop()
            embedded.stop()

    print(
        f"api_load: {args.clients} concurrent clients, <= {args.seconds:g}s or {args.max_requests} requests per phase"
    )
    print(f"{'endpoint':<16}{'server':<10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, (base, real) in phases.items():
        for label, fig in (("bare", base), ("embedded", real)):
            print(f"{name:<16}{label:<10}{fig.rps:>9.1f}{fig.pct(0.5):>9.2f}{fig.pct(0.99):>9.2f}{fig.errors:>8}")
        print(
            f"{name:<16}{'ratio':<10}{real.rps / base.rps:>8.2f}x{real.pct(0.5) / base.pct(0.5):>8.2f}x"
            f"{real.pct(0.99) / base.pct(0.99):>8.2f}x   (embedded / bare)"
        )
    failed = sum(real.errors + base.errors for base, real in phases.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
