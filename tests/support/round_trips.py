"""Counts the round trips a block of code makes to the store and to the queue, on whichever adapters a Components
holds, where each backend sees them:

- the Supabase store: HTTP requests arriving at the PostgREST-subset server (its `observers`);
- SQLite (the embedded store and the embedded queue): one autocommit statement, or one BEGIN ... COMMIT however
  many statements it holds, is one round trip; seen through sqlite3's trace callback on every connection the
  adapter's SqliteDatabase hands out while counting;
- SQS: HTTP requests botocore sends (its `before-send` event).

    with counting_round_trips(components, postgrest=stack.subset) as trips:
        client.post("/jobs", ...)
    assert (len(trips.store), len(trips.queue)) == (1, 1)

Each list holds what the round trips were (statement, or method and path), for assertion messages.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from robotrain.adapters.local_queue import LocalJobQueue
from robotrain.adapters.sqlite_db import SqliteDatabase
from robotrain.adapters.sqlite_store import SqliteJobStore
from robotrain.adapters.sqs_queue import SqsJobQueue
from robotrain.adapters.supabase_store import SupabaseJobStore
from robotrain.ports import Components
from tests.support.postgrest import PostgrestSubset


@dataclass
class RoundTrips:
    store: list[str] = field(default_factory=list)
    queue: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"store: {self.store}\nqueue: {self.queue}"


@contextmanager
def counting_round_trips(components: Components, *, postgrest: PostgrestSubset | None = None) -> Iterator[RoundTrips]:
    trips = RoundTrips()
    with ExitStack() as stack:
        store, queue = components.store, components.queue
        if isinstance(store, SqliteJobStore):
            stack.enter_context(_sqlite(store._db, trips.store))
        elif isinstance(store, SupabaseJobStore):
            if postgrest is None:
                raise ValueError("counting a Supabase store's round trips needs the PostgREST-subset server")
            stack.enter_context(_postgrest(postgrest, trips.store))
        else:
            raise TypeError(f"cannot count round trips of {type(store).__name__}")
        if isinstance(queue, LocalJobQueue):
            stack.enter_context(_sqlite(queue._db, trips.queue))
        elif isinstance(queue, SqsJobQueue):
            stack.enter_context(_botocore(queue._client, trips.queue))
        else:
            raise TypeError(f"cannot count round trips of {type(queue).__name__}")
        yield trips


@contextmanager
def _postgrest(subset: PostgrestSubset, seen: list[str]) -> Iterator[None]:
    def observe(method: str, path: str) -> None:
        seen.append(f"{method} /rest/v1/{path}")

    subset.observers.append(observe)
    try:
        yield
    finally:
        subset.observers.remove(observe)


@contextmanager
def _botocore(client: Any, seen: list[str]) -> Iterator[None]:
    def before_send(request: Any, **_: Any) -> None:
        target = request.headers.get("X-Amz-Target", request.url)
        seen.append(f"{request.method} {target.decode() if isinstance(target, bytes) else target}")

    client.meta.events.register("before-send.sqs", before_send)
    try:
        yield
    finally:
        client.meta.events.unregister("before-send.sqs", before_send)


@contextmanager
def _sqlite(db: SqliteDatabase, seen: list[str]) -> Iterator[None]:
    """Wraps `db.connection` (every statement of the adapter starts there) to trace the connections it returns."""
    in_transaction: dict[int, bool] = {}
    traced: dict[int, sqlite3.Connection] = {}
    lock = threading.Lock()
    original = db.connection

    def trace_for(conn: sqlite3.Connection):
        def trace(statement: str) -> None:
            word = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
            with lock:
                if word == "BEGIN":
                    in_transaction[id(conn)] = True
                    seen.append(statement)
                elif word in ("COMMIT", "ROLLBACK", "END"):
                    in_transaction[id(conn)] = False
                elif not in_transaction.get(id(conn), False):
                    seen.append(statement)

        return trace

    def connection() -> sqlite3.Connection:
        conn = original()
        with lock:
            if id(conn) not in traced:
                traced[id(conn)] = conn
                conn.set_trace_callback(trace_for(conn))
        return conn

    db.connection = connection  # type: ignore[method-assign]
    try:
        yield
    finally:
        del db.connection  # back to the class's method
        for conn in traced.values():
            conn.set_trace_callback(None)
