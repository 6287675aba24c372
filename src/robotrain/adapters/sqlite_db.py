"""One SQLite file used from many threads and processes: the connection handling that the embedded store and the
embedded queue share.

WAL lets readers run beside the one writer; busy_timeout makes a writer wait for the lock instead of failing at once;
BEGIN IMMEDIATE takes the write lock up front so a read-then-write cannot interleave. Transient SQLite errors (a lock
held past busy_timeout, a failing disk) become the caller's `unavailable` error (StoreUnavailable, QueueUnavailable);
anything else is a bug and propagates.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from robotrain.errors import ServiceUnavailable

BUSY_TIMEOUT_MS = 5_000

# SQLite result codes (primary codes; extended codes are `primary | (n << 8)`) that mean "try again later": another
# connection holds the lock past busy_timeout, or the disk or file system failed under us. They become
# StoreUnavailable (503). Anything else (a bad statement, a constraint we did not expect) is a bug and propagates.
TRANSIENT_SQLITE_ERRORS = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_CANTOPEN",
    "SQLITE_PROTOCOL",
)
_SQLITE_PRIMARY_NAMES = {
    5: "SQLITE_BUSY",
    6: "SQLITE_LOCKED",
    10: "SQLITE_IOERR",
    13: "SQLITE_FULL",
    14: "SQLITE_CANTOPEN",
    15: "SQLITE_PROTOCOL",
}


def is_transient_sqlite_error(error: sqlite3.Error) -> bool:
    """Whether the error's result code is in TRANSIENT_SQLITE_ERRORS (worth a 503 and a retry later)."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return _SQLITE_PRIMARY_NAMES.get(code & 0xFF) in TRANSIENT_SQLITE_ERRORS
    # sqlite3 errors raised before a statement runs (e.g. opening the file) may carry no code
    message = str(error).lower()
    return "locked" in message or "disk i/o" in message or "unable to open" in message


class SqliteDatabase:
    """One SQLite file used from many threads and processes: a connection per thread (opened lazily, reopened after
    a fork), WAL, busy_timeout, autocommit statements, BEGIN IMMEDIATE transactions, and transient errors turned
    into `unavailable` (an AppError such as StoreUnavailable or QueueUnavailable)."""

    def __init__(
        self,
        path: Path,
        *,
        unavailable: type[ServiceUnavailable],
        what: str,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ):
        self.path = Path(path)
        self._unavailable = unavailable
        self._what = what
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._connections: list[tuple[int, sqlite3.Connection]] = []  # (opening pid, connection)
        self._connections_lock = threading.Lock()
        with self.errors():
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        # a forked child must not reuse its parent's connection
        if conn is None or self._local.pid != os.getpid():
            with self.errors():
                conn = sqlite3.connect(
                    self.path, timeout=self._busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
                )
                try:
                    conn.row_factory = sqlite3.Row
                    conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
                    conn.execute("PRAGMA journal_mode = WAL")
                    conn.execute("PRAGMA synchronous = NORMAL")
                    conn.execute("PRAGMA foreign_keys = ON")
                except BaseException:
                    conn.close()
                    raise
            self._local.conn = conn
            self._local.pid = os.getpid()
            with self._connections_lock:
                self._connections.append((os.getpid(), conn))
        return conn

    @contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except OSError as error:  # the file's directory cannot be created
            raise self._unavailable(f"the {self._what} ({self.path}) is unavailable: {error}") from error
        except sqlite3.DatabaseError as error:
            if isinstance(error, sqlite3.IntegrityError | sqlite3.ProgrammingError) or not is_transient_sqlite_error(
                error
            ):
                raise
            raise self._unavailable(f"the {self._what} ({self.path.name}) is unavailable: {error}") from error

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE takes the write lock up front, so a read-then-write inside cannot be interleaved."""
        conn = self.connection()
        with self.errors():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:  # some errors (SQLITE_FULL, IOERR) have already rolled it back
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """One autocommit statement; RETURNING rows are fetched in full so the statement completes."""
        conn = self.connection()
        with self.errors():
            return conn.execute(sql, params).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One autocommit statement; the number of rows it changed."""
        conn = self.connection()
        with self.errors():
            return conn.execute(sql, params).rowcount

    def create_schema(self, schema: str, version: int, *, component: str) -> None:
        """Run the idempotent `schema` (statements separated by ';') and record or check its version. Each component
        (the job store, the queue, each domain's tables) versions its own tables in the same file."""
        with self.transaction() as conn:
            for statement in schema.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            row = conn.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)).fetchone()
            if row is None:
                conn.execute("INSERT INTO schema_versions (component, version) VALUES (?, ?)", (component, version))
            elif row[0] > version:
                raise RuntimeError(
                    f"{self.path} has {component} schema version {row[0]}, newer than this code's {version}; "
                    "upgrade robotrain"
                )

    def ping(self) -> None:
        """Read a page of the file, so a missing, locked or unreadable database fails here (as `unavailable`)."""
        self.query("SELECT version FROM schema_versions LIMIT 1")

    def close(self) -> None:
        """Close every connection this object opened in this process (in any thread). Connections inherited
        through fork belong to the parent and are left alone: closing them here could disturb its locks."""
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for pid, conn in connections:
            if pid == os.getpid():
                conn.close()
        self._local = threading.local()
