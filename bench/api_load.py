"""API load bench: requests/s and p50/p99 latency of POST /jobs and GET /jobs/{id}, each as a ratio to a bare
server measured the same way (uvicorn in its own process, 127.0.0.1) in the same run.

    .venv/bin/python bench/api_load.py [--clients 16] [--seconds 5] [--max-requests 3000]
    .venv/bin/python bench/api_load.py --cloud [--rounds 3] [--seconds 5]

Embedded (default): the real app (JWT verification, SQLite store, local queue) against a bare FastAPI endpoint that
does no work.

Cloud (`--cloud`): the real app wired to the stand-ins the tests use (bench/standins.py: Supabase as PostgreSQL 15
behind the PostgREST-subset server in its own process, SQS on moto's server, Clerk-style RS256 tokens checked against
a JWKS on 127.0.0.1), at 8 and 32 concurrent clients, against a bare implementation of the same two requests on the
same stand-ins with the same SDKs (verify the token, insert the row with supabase-py and send the message with
boto3; read the row back), which has no caps, no idempotency, no events and no outbox. Each client is its own user.
It also prints the round trips per request: requests that reached the PostgREST stand-in, and messages that reached
the queue. Rounds alternate which server goes first; the table shows the median round.

In both modes the dispatch loop is off, so no training worker competes for the CPU; the submitted jobs are valid
and stay queued. Everything lives in a temp dir and every server is stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/standins.py

# Longer than any stall of a loaded machine: uvicorn's default (5 s) lets a server close a keep-alive connection
# that the load generator, starved of CPU, is just about to reuse (httpx.ReadError), which no real client would see.
KEEP_ALIVE_S = 75

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

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=KEEP_ALIVE_S)


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
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=KEEP_ALIVE_S)


def serve_cloud(port: int, data_dir: Path) -> None:
    """The real app on the cloud stand-ins: its variables come from the environment (bench/standins.py)."""
    import uvicorn

    from robotrain.api.app import create_app
    from robotrain.settings import Settings
    from robotrain.wiring import build_components, build_verifier

    settings = Settings(
        data_dir=data_dir, submit_rate_per_minute=10**9, max_active_jobs_per_user=10**9, log_level="WARNING"
    )
    app = create_app(build_components(settings), verifier=build_verifier(settings))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=KEEP_ALIVE_S)


def serve_bare_cloud(port: int) -> None:
    """The baseline on the same stand-ins: what the two requests need at the least, written the obvious way with
    the same SDKs and their default settings (sync routes in FastAPI's thread pool)."""
    import uuid

    import boto3
    import jwt
    import uvicorn
    from fastapi import FastAPI, Header, HTTPException
    from supabase import create_client

    supabase = create_client(os.environ["SUPABASE_URL"], os.environ["SUPABASE_KEY"])
    sqs = boto3.client("sqs", region_name=os.environ["AWS_REGION"], endpoint_url=os.environ["AWS_ENDPOINT_URL_SQS"])
    jwks = jwt.PyJWKClient(os.environ["CLERK_JWKS_URL"])
    queue_url, issuer = os.environ["SQS_QUEUE_URL"], os.environ["CLERK_ISSUER"]
    app = FastAPI()

    def user(authorization: str) -> str:
        token = authorization.removeprefix("Bearer ")
        try:
            key = jwks.get_signing_key_from_jwt(token).key
            return jwt.decode(token, key, algorithms=["RS256"], issuer=issuer)["sub"]
        except jwt.PyJWTError:
            raise HTTPException(401) from None

    @app.post("/jobs", status_code=202)
    def submit(body: dict[str, Any], authorization: str = Header()) -> dict[str, Any]:
        row = {"id": f"job_{uuid.uuid4().hex[:26]}", "user_id": user(authorization), "name": "bare", "status": "queued",
               "spec": body}  # fmt: skip
        job = supabase.table("jobs").insert(row).execute().data[0]
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"job_id": job["id"]}))
        return job

    @app.get("/jobs/{job_id}")
    def read(job_id: str, authorization: str = Header()) -> dict[str, Any]:
        rows = supabase.table("jobs").select("*").eq("id", job_id).eq("user_id", user(authorization)).execute().data
        if not rows:
            raise HTTPException(404)
        return rows[0]

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=KEEP_ALIVE_S)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`script` (this file by default) run with `args` and `--port`, in its own session."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, script: str = __file__):
        self.port = _free_port()
        self.process = subprocess.Popen(
            [sys.executable, script, *args, "--port", str(self.port)],
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def cpu_s(self) -> float:
        """CPU seconds the server process has used (user + system, from /proc): per request, a figure that the
        other load on a shared machine hardly moves, unlike latency."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

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
    requests: int  # timed ones
    errors: int
    seconds: float
    latencies_ms: list[float]
    warmup: int = 0  # sent before the timing started

    @property
    def sent(self) -> int:
        return self.requests + self.warmup

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(
    url: str,
    method: str,
    path: str | list[str],
    *,
    headers: dict[str, str] | list[dict[str, str]],
    body: Any,
    clients: int,
    seconds: float,
    cap: int,
) -> Figures:
    """`clients` concurrent loops of one request each; a list of paths or headers gives client i its own."""
    paths = path if isinstance(path, list) else [path] * clients
    client_headers = headers if isinstance(headers, list) else [headers] * clients
    latencies: list[float] = []
    errors = 0
    issued = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:

        async def one_client(index: int) -> None:
            nonlocal errors, issued
            while time.monotonic() < deadline and issued < cap:
                issued += 1
                started = time.perf_counter()
                try:
                    response = await http.request(method, paths[index], json=body, headers=client_headers[index])
                except httpx.TransportError:
                    errors += 1  # counted, not timed: a dropped connection says nothing about latency
                    continue
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code >= 400:
                    errors += 1

        # Warm-up: connections opened and code paths hot before timing.
        await asyncio.gather(
            *(http.request(method, paths[i], json=body, headers=client_headers[i]) for i in range(clients))
        )
        began = time.perf_counter()
        await asyncio.gather(*(one_client(i) for i in range(clients)))
        elapsed = time.perf_counter() - began
    return Figures(len(latencies), errors, elapsed, latencies, warmup=clients)


def run_embedded(args: argparse.Namespace) -> int:
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


@dataclass
class CloudPhase:
    figures: Figures
    store_trips: float  # requests that reached the PostgREST stand-in, per API request
    queue_sends: float  # messages that reached the queue, per API request
    cpu_ms: float  # CPU the API server process spent per request


def run_cloud(args: argparse.Namespace) -> int:
    from standins import REGION, cloud_standins

    from robotrain.adapters.sqs_queue import SqsJobQueue, create_queue_with_dlq, make_client

    client_counts: list[int] = args.cloud_clients
    results: dict[tuple[str, str, int], list[CloudPhase]] = {}
    with cloud_standins() as standins, tempfile.TemporaryDirectory(prefix="robotrain-bench-") as tmp:
        queue_url, _ = create_queue_with_dlq(
            make_client(region=REGION, endpoint_url=standins.sqs_endpoint), "bench-jobs", max_receive_count=5
        )
        queue = SqsJobQueue(queue_url, region=REGION, endpoint_url=standins.sqs_endpoint)
        env = standins.environment(queue_url)
        servers = {
            "robotrain": ServerProcess("--serve-cloud", str(Path(tmp) / "data"), env=env),
            "bare": ServerProcess("--serve-bare-cloud", env=env),
        }
        try:
            for server in servers.values():
                server.wait_ready("/jobs/x")
            users = max(client_counts)
            auth = [{"Authorization": f"Bearer {standins.token(f'user_{i}')}"} for i in range(users)]
            for round_ in range(args.rounds):
                order = list(servers) if round_ % 2 == 0 else list(servers)[::-1]
                for clients in client_counts:
                    for name in order:
                        url = servers[name].url
                        common = {"clients": clients, "seconds": args.seconds, "cap": args.max_requests}
                        depth = queue.approximate_depth()["visible"]
                        trips, cpu = standins.store_requests(), servers[name].cpu_s()
                        posted = asyncio.run(load(url, "POST", "/jobs", headers=auth[:clients], body=SPEC, **common))
                        cpu_ms = (servers[name].cpu_s() - cpu) * 1000 / posted.sent
                        sends = queue.approximate_depth()["visible"] - depth
                        store_trips = standins.store_requests() - trips
                        results.setdefault(("POST /jobs", name, clients), []).append(
                            CloudPhase(posted, store_trips / posted.sent, sends / posted.sent, cpu_ms)
                        )
                        paths = []
                        for i in range(clients):  # each client reads a job of its own
                            answer = httpx.post(url + "/jobs", json=SPEC, headers=auth[i], timeout=30)
                            paths.append(f"/jobs/{answer.json()['id']}")
                        trips, cpu = standins.store_requests(), servers[name].cpu_s()
                        read = asyncio.run(load(url, "GET", paths, headers=auth[:clients], body=None, **common))
                        cpu_ms = (servers[name].cpu_s() - cpu) * 1000 / read.sent
                        store_trips = standins.store_requests() - trips
                        results.setdefault(("GET /jobs/{id}", name, clients), []).append(
                            CloudPhase(read, store_trips / read.sent, 0.0, cpu_ms)
                        )
                standins.empty_store()
        finally:
            for server in servers.values():
                server.stop()

    def median_phase(phases: list[CloudPhase]) -> CloudPhase:
        return sorted(phases, key=lambda phase: phase.figures.rps)[len(phases) // 2]

    print(
        f"api_load --cloud: PostgREST-subset over PostgreSQL 15, moto SQS, JWKS; one user per client; "
        f"{args.seconds:g}s per phase, median of {args.rounds} rounds"
    )
    print(
        f"{'endpoint':<16}{'server':<11}{'clients':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p99/p50':>9}"
        f"{'store':>7}{'queue':>7}{'cpu ms':>8}{'errors':>8}"
    )
    failed = 0
    for endpoint in ("POST /jobs", "GET /jobs/{id}"):
        for name in ("robotrain", "bare"):
            for clients in client_counts:
                phase = median_phase(results[(endpoint, name, clients)])
                fig = phase.figures
                failed += sum(p.figures.errors for p in results[(endpoint, name, clients)])
                print(
                    f"{endpoint:<16}{name:<11}{clients:>8}{fig.rps:>9.1f}{fig.pct(0.5):>9.2f}{fig.pct(0.99):>9.2f}"
                    f"{fig.pct(0.99) / fig.pct(0.5):>8.2f}x{phase.store_trips:>7.2f}{phase.queue_sends:>7.2f}"
                    f"{phase.cpu_ms:>8.2f}{fig.errors:>8}"
                )
        low, high = min(client_counts), max(client_counts)
        ours = {c: median_phase(results[(endpoint, "robotrain", c)]).figures for c in client_counts}
        bare = {c: median_phase(results[(endpoint, "bare", c)]).figures for c in client_counts}
        print(
            f"{endpoint:<16}robotrain req/s at {high} / at {low} clients: {ours[high].rps / ours[low].rps:.2f}x; "
            + "; ".join(f"robotrain / bare at {c}: {ours[c].rps / bare[c].rps:.2f}x" for c in client_counts)
        )
    every = [p.figures.rps for phases in results.values() for p in phases]
    print(f"(req/s of single phases ranged {min(every):.1f}-{max(every):.1f}; spread is the shared machine)")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16, help="embedded mode")
    parser.add_argument("--cloud", action="store_true", help="the cloud stand-ins at 8 and 32 clients")
    parser.add_argument("--cloud-clients", type=int, nargs="+", default=[8, 32], help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3, help="cloud mode: rounds of every phase")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measured phase")
    parser.add_argument("--max-requests", type=int, default=3000, help="per measured phase")
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-embedded", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--serve-cloud", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare-cloud", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.port)
        return 0
    if args.serve_embedded:
        serve_embedded(args.port, args.serve_embedded)
        return 0
    if args.serve_cloud:
        serve_cloud(args.port, args.serve_cloud)
        return 0
    if args.serve_bare_cloud:
        serve_bare_cloud(args.port)
        return 0
    return run_cloud(args) if args.cloud else run_embedded(args)


if __name__ == "__main__":
    sys.exit(main())
