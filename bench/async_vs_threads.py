"""Which serving model for the API: sync store calls in FastAPI's thread pool (what robotrain does), or async routes
with supabase-py's async client? Measured here on the same cloud stand-ins as bench/api_load.py --cloud.

    .venv/bin/python bench/async_vs_threads.py [--rounds 3] [--seconds 5]

One server process serves GET /jobs/{id} both ways, with the same work per request: verify a Clerk-style RS256
token, read the caller's job in one PostgREST request, build the Job and answer it.
- /threads/{id}: robotrain's way: token verification and the SupabaseJobStore call each in the thread pool, over one
  shared httpx.Client (keep-alive pool of 64);
- /async/{id}: the token verified inline, the row read with supabase-py's AsyncClient over one shared
  httpx.AsyncClient (keep-alive pool of 64), nothing in a thread.
Each runs at 8 and 32 concurrent clients (one user each); rounds alternate the order; the median round is shown,
with async / threads ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_load import KEEP_ALIVE_S, SPEC, Figures, ServerProcess, load  # noqa: E402

from robotrain.api.schemas import JobOut  # noqa: E402


def serve(port: int) -> None:
    import httpx
    import uvicorn
    from fastapi import FastAPI, Header, HTTPException
    from starlette.concurrency import run_in_threadpool
    from supabase import AsyncClientOptions, acreate_client

    from robotrain.adapters.supabase_store import SupabaseJobStore, _row_to_job
    from robotrain.settings import Settings
    from robotrain.wiring import build_verifier

    settings = Settings()
    verifier = build_verifier(settings)
    store = SupabaseJobStore.from_settings(settings)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    http = httpx.AsyncClient(timeout=10, limits=limits)
    clients: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        clients["supabase"] = await acreate_client(
            os.environ["SUPABASE_URL"],
            os.environ["SUPABASE_KEY"],
            options=AsyncClientOptions(httpx_client=http, postgrest_client_retry=False),
        )
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/threads/{job_id}")
    async def threads(job_id: str, authorization: str = Header()) -> JobOut:
        user = await run_in_threadpool(verifier.verify, authorization.removeprefix("Bearer "))
        job = await run_in_threadpool(store.get, job_id, user_id=user)
        if job is None:
            raise HTTPException(404)
        return JobOut.of(job)

    @app.get("/async/{job_id}")
    async def asynchronous(job_id: str, authorization: str = Header()) -> JobOut:
        user = verifier.verify(authorization.removeprefix("Bearer "))  # keys are cached: CPU only
        query = clients["supabase"].table("jobs").select("*").eq("id", job_id).eq("user_id", user).limit(1)
        rows = (await query.execute()).data
        if not rows:
            raise HTTPException(404)
        return JobOut.of(_row_to_job(rows[0]))

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=KEEP_ALIVE_S)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port)
        return 0

    import httpx
    from standins import REGION, cloud_standins

    from robotrain.adapters.sqs_queue import create_queue_with_dlq, make_client

    results: dict[tuple[str, int], list[Figures]] = {}
    with cloud_standins() as standins:
        queue_url, _ = create_queue_with_dlq(
            make_client(region=REGION, endpoint_url=standins.sqs_endpoint), "bench-async", max_receive_count=5
        )
        server = ServerProcess("--serve", env=standins.environment(queue_url), script=__file__)
        # The jobs to read are written by the real app's store directly: one per client (user).
        from robotrain.adapters.supabase_store import SupabaseJobStore
        from robotrain.jobs.lifecycle import new_queued_job
        from robotrain.jobs.models import new_job_id, utcnow

        store = SupabaseJobStore(standins.supabase_url, standins.service_key)
        auth, paths = [], []
        for i in range(32):
            job, _ = new_queued_job(new_job_id(), f"user_{i}", SPEC, name="bench", now=utcnow())
            store.create(job)
            auth.append({"Authorization": f"Bearer {standins.token(f'user_{i}')}"})
            paths.append(job.id)
        store.close()
        try:
            server.wait_ready("/threads/x")
            httpx.get(server.url + f"/async/{paths[0]}", headers=auth[0], timeout=10).raise_for_status()
            for round_ in range(args.rounds):
                order = ["threads", "async"] if round_ % 2 == 0 else ["async", "threads"]
                for clients in (8, 32):
                    for mode in order:
                        figures = asyncio.run(
                            load(
                                server.url,
                                "GET",
                                [f"/{mode}/{job_id}" for job_id in paths[:clients]],
                                headers=auth[:clients],
                                body=None,
                                clients=clients,
                                seconds=args.seconds,
                                cap=100_000,
                            )
                        )
                        results.setdefault((mode, clients), []).append(figures)
        finally:
            server.stop()

    def median(mode: str, clients: int) -> Figures:
        runs = sorted(results[(mode, clients)], key=lambda figures: figures.rps)
        return runs[len(runs) // 2]

    print(f"async_vs_threads: GET /jobs/{{id}} on the cloud stand-ins, median of {args.rounds} rounds")
    print(f"{'mode':<9}{'clients':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for clients in (8, 32):
        for mode in ("threads", "async"):
            fig = median(mode, clients)
            print(f"{mode:<9}{clients:>8}{fig.rps:>9.1f}{fig.pct(0.5):>9.2f}{fig.pct(0.99):>9.2f}{fig.errors:>8}")
        threads, asynchronous = median("threads", clients), median("async", clients)
        print(
            f"{'ratio':<9}{clients:>8}{asynchronous.rps / threads.rps:>8.2f}x"
            f"{asynchronous.pct(0.5) / threads.pct(0.5):>8.2f}x{asynchronous.pct(0.99) / threads.pct(0.99):>8.2f}x"
            "   (async / threads)"
        )
    spread = [f.rps for runs in results.values() for f in runs]
    print(f"(single phases ranged {min(spread):.1f}-{max(spread):.1f} req/s; median {statistics.median(spread):.1f})")
    return 1 if any(f.errors for runs in results.values() for f in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
