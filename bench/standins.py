"""The cloud stand-ins the tests use (tests/support), started for a bench run: PostgreSQL 15 with Supabase's bootstrap
and our migrations, the PostgREST-subset server over it, moto's SQS server, a JWKS for Clerk-style tokens. All on
127.0.0.1 (PostgreSQL on a Unix socket), all stopped when the block ends.

The PostgREST-subset server runs in its own process (this file, `--serve-postgrest`), as PostgREST does, so it does
not share a GIL with the bench's load or its API server; it counts the requests it receives and answers the count
at GET /__bench/requests, so a bench can report store round trips per API request.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support

from tests.support import moto, postgres, postgrest  # noqa: E402
from tests.support.jwks_server import JwksServer, SigningKey, rsa_key  # noqa: E402
from tests.support.supabase_env import JWT_SECRET  # noqa: E402

REGION = "us-east-1"
ISSUER = "https://clerk.bench.test"
COUNT_PATH = "/__bench/requests"


@dataclass(frozen=True)
class CloudStandins:
    supabase_url: str
    service_key: str
    sqs_endpoint: str
    jwks_url: str
    signing_key: SigningKey
    conninfo: str  # the database, as its superuser

    def environment(self, queue_url: str) -> dict[str, str]:
        """The variables that point robotrain's Settings at these stand-ins (and boto3 at moto)."""
        return {
            "SUPABASE_URL": self.supabase_url,
            "SUPABASE_KEY": self.service_key,
            "SQS_QUEUE_URL": queue_url,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL_SQS": self.sqs_endpoint,
            "CLERK_JWKS_URL": self.jwks_url,
            "CLERK_ISSUER": ISSUER,
            **moto.FAKE_CREDENTIALS,
        }

    def token(self, user_id: str) -> str:
        return self.signing_key.mint(sub=user_id, iss=ISSUER, exp=int(time.time()) + 3600)

    def store_requests(self) -> int:
        with urllib.request.urlopen(self.supabase_url + COUNT_PATH, timeout=10) as answer:
            return int(answer.read())

    def empty_store(self) -> None:
        import psycopg

        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute("delete from events; delete from metrics; delete from idempotency_keys; "
                         "delete from submit_buckets; delete from jobs")  # fmt: skip


@contextmanager
def cloud_standins() -> Iterator[CloudStandins]:
    for name, value in moto.FAKE_CREDENTIALS.items():
        os.environ.setdefault(name, value)  # boto3 in this process talks to moto only
    with ExitStack() as stack:
        cluster = stack.enter_context(postgres.cluster(port=5499))
        database = postgres.create_database(cluster, "robotrain")
        url = stack.enter_context(_postgrest_process(cluster.conninfo(database, user="authenticator")))
        sqs_endpoint = stack.enter_context(moto.moto_server())
        jwks = stack.enter_context(JwksServer())
        key = rsa_key()
        jwks.publish(key)
        yield CloudStandins(
            supabase_url=url,
            service_key=postgrest.mint_jwt(JWT_SECRET, "service_role", ttl_s=24 * 3600),
            sqs_endpoint=sqs_endpoint,
            jwks_url=jwks.frontend_url,
            signing_key=key,
            conninfo=cluster.conninfo(database),
        )


@contextmanager
def _postgrest_process(conninfo: str) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve-postgrest", conninfo],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"the PostgREST-subset server did not start (said {url!r})")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def _serve_postgrest(conninfo: str) -> None:
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    # Enough pooled connections for every request the bench has in flight (the tests need only a few).
    subset = postgrest.PostgrestSubset(conninfo, JWT_SECRET, max_idle_connections=64)
    received = [0]
    lock = threading.Lock()

    def count(method: str, path: str) -> None:
        with lock:
            received[0] += 1

    async def requests(_request) -> PlainTextResponse:
        return PlainTextResponse(str(received[0]))

    subset.observers.append(count)
    subset.app.router.routes.insert(0, Route(COUNT_PATH, requests))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with postgrest.serve(subset) as server:
        print(server.url, flush=True)
        stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve-postgrest", metavar="CONNINFO", required=True)
    _serve_postgrest(parser.parse_args().serve_postgrest)
