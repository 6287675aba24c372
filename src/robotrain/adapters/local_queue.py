"""The embedded JobQueue: SQS semantics on a SQLite table, so the drain code that runs here is the code that runs
against SQS (AWS, "Amazon SQS visibility timeout", "dead-letter queues", "long polling").

- A receive hides each message for the visibility timeout, gives it a new receipt handle and counts the receive.
- Only the latest receipt handle deletes or changes visibility; an older one fails (SQS "may" ignore it silently,
  which is worse: this queue says so).
- A message whose receive count would exceed `max_receives` moves to the dead-letter table instead of being
  delivered (SQS's redrive policy with maxReceiveCount).
- Long polling re-checks every POLL_INTERVAL_S until a message is visible or the wait ends.

Several processes (the API server, the drain) share the file. A receive claims inside BEGIN IMMEDIATE, which holds
SQLite's single write lock, so two receivers can never claim the same visible message.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from robotrain.adapters.sqlite_db import BUSY_TIMEOUT_MS, SqliteDatabase
from robotrain.errors import QueueUnavailable
from robotrain.ports import MAX_MESSAGE_BYTES, MessageTooLarge, QueueMessage, ReceiptHandleInvalid

SCHEMA_VERSION = 1
MAX_VISIBILITY_TIMEOUT_S = 43_200  # SQS: 12 h
MAX_WAIT_SECONDS = 20  # SQS long polling limit
MAX_BATCH = 10  # SQS receive batch limit
POLL_INTERVAL_S = 0.05

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    sent_at REAL NOT NULL,
    visible_at REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt_handle TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS messages_visible ON messages (queue, visible_at, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at REAL NOT NULL,
    receive_count INTEGER NOT NULL,
    moved_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_queue ON dead_letters (queue, seq);
"""


@dataclass(frozen=True)
class DeadLetter:
    """A message that was received `receive_count` times without being deleted, moved aside at `moved_at`."""

    message_id: str
    body: str
    receive_count: int
    sent_at: datetime
    moved_at: datetime


def check_message_size(body: str, limit: int = MAX_MESSAGE_BYTES) -> None:
    """SQS counts the body in UTF-8 bytes, not characters: 600k "é" is 1.2 MB and refused."""
    size = len(body.encode("utf-8"))
    if size > limit:
        raise MessageTooLarge(f"message body is {size} bytes in UTF-8; the queue accepts at most {limit}")


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")


class LocalJobQueue:
    """JobQueue on a SQLite file; `name` lets several queues share one file."""

    def __init__(
        self,
        path: Path,
        *,
        max_receives: int = 5,
        visibility_timeout_s: int = 60,
        name: str = "jobs",
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ):
        if max_receives < 1:
            raise ValueError(f"max_receives must be at least 1, got {max_receives}")
        _check_range("visibility_timeout_s", visibility_timeout_s, 0, MAX_VISIBILITY_TIMEOUT_S)
        self.path = Path(path)
        self.name = name
        self.max_receives = max_receives
        self.visibility_timeout_s = visibility_timeout_s
        self._db = SqliteDatabase(
            self.path, unavailable=QueueUnavailable, what=f"queue {name!r}", busy_timeout_ms=busy_timeout_ms
        )
        self._db.create_schema(_SCHEMA, SCHEMA_VERSION, component="queue")
        # wakes this instance's long pollers at once when it sends; other processes are seen by polling
        self._sent = threading.Condition()

    def close(self) -> None:
        self._db.close()

    # --- the port --------------------------------------------------------------------------------------------

    def send(self, body: str) -> str:
        check_message_size(body)
        message_id = str(uuid.uuid4())
        now = time.time()
        self._db.query(
            "INSERT INTO messages (queue, message_id, body, sent_at, visible_at) VALUES (?, ?, ?, ?, ?)",
            (self.name, message_id, body, now, now),
        )
        with self._sent:
            self._sent.notify_all()
        return message_id

    def receive(
        self, *, max_messages: int = 10, visibility_timeout: int | None = None, wait_seconds: float = 0
    ) -> list[QueueMessage]:
        _check_range("max_messages", max_messages, 1, MAX_BATCH)
        timeout = self.visibility_timeout_s if visibility_timeout is None else visibility_timeout
        _check_range("visibility_timeout", timeout, 0, MAX_VISIBILITY_TIMEOUT_S)
        _check_range("wait_seconds", wait_seconds, 0, MAX_WAIT_SECONDS)
        deadline = time.monotonic() + wait_seconds
        while True:
            messages = self._claim(max_messages, timeout)
            remaining = deadline - time.monotonic()
            if messages or remaining <= 0:
                return messages
            with self._sent:
                self._sent.wait(min(POLL_INTERVAL_S, remaining))

    def delete(self, receipt_handles: list[str]) -> list[str]:
        if not receipt_handles:
            return []
        failed: list[str] = []
        with self._db.transaction() as conn:
            for handle in receipt_handles:
                deleted = conn.execute(
                    "DELETE FROM messages WHERE queue = ? AND receipt_handle = ?", (self.name, handle)
                ).rowcount
                if not deleted:
                    failed.append(handle)
        return failed

    def change_visibility(self, receipt_handle: str, timeout_seconds: int) -> None:
        _check_range("timeout_seconds", timeout_seconds, 0, MAX_VISIBILITY_TIMEOUT_S)
        changed = self._db.execute(
            "UPDATE messages SET visible_at = ? WHERE queue = ? AND receipt_handle = ?",
            (time.time() + timeout_seconds, self.name, receipt_handle),
        )
        if not changed:
            raise ReceiptHandleInvalid(
                f"receipt handle {receipt_handle!r} is unknown or stale: the message was deleted or received again"
            )

    def ping(self) -> None:
        self._db.ping()

    # --- extras (not in the port): tests and an admin view ---------------------------------------------------

    def dead_letters(self) -> list[DeadLetter]:
        rows = self._db.query(
            "SELECT message_id, body, receive_count, sent_at, moved_at FROM dead_letters WHERE queue = ? ORDER BY seq",
            (self.name,),
        )
        return [
            DeadLetter(
                message_id=row["message_id"],
                body=row["body"],
                receive_count=row["receive_count"],
                sent_at=datetime.fromtimestamp(row["sent_at"], UTC),
                moved_at=datetime.fromtimestamp(row["moved_at"], UTC),
            )
            for row in rows
        ]

    def approximate_depth(self) -> int:
        """Messages visible now (SQS's ApproximateNumberOfMessages)."""
        rows = self._db.query(
            "SELECT count(*) FROM messages WHERE queue = ? AND visible_at <= ?", (self.name, time.time())
        )
        return rows[0][0]

    def approximate_in_flight(self) -> int:
        """Messages received and hidden now (SQS's ApproximateNumberOfMessagesNotVisible)."""
        rows = self._db.query(
            "SELECT count(*) FROM messages WHERE queue = ? AND visible_at > ?", (self.name, time.time())
        )
        return rows[0][0]

    # --- internals -------------------------------------------------------------------------------------------

    def _claim(self, max_messages: int, visibility_timeout: float) -> list[QueueMessage]:
        with self._db.transaction() as conn:
            now = time.time()
            # the next receive would exceed max_receives: move to the dead letters instead of delivering
            conn.execute(
                "INSERT INTO dead_letters (queue, message_id, body, sent_at, receive_count, moved_at) "
                "SELECT queue, message_id, body, sent_at, receive_count, ? FROM messages "
                "WHERE queue = ? AND visible_at <= ? AND receive_count >= ? ORDER BY seq",
                (now, self.name, now, self.max_receives),
            )
            conn.execute(
                "DELETE FROM messages WHERE queue = ? AND visible_at <= ? AND receive_count >= ?",
                (self.name, now, self.max_receives),
            )
            rows = conn.execute(
                "UPDATE messages SET receive_count = receive_count + 1, visible_at = ?, "
                "receipt_handle = message_id || '.' || (receive_count + 1) || '.' || lower(hex(randomblob(12))) "
                "WHERE seq IN (SELECT seq FROM messages WHERE queue = ? AND visible_at <= ? ORDER BY seq LIMIT ?) "
                "RETURNING seq, message_id, receipt_handle, body, receive_count",
                (now + visibility_timeout, self.name, now, max_messages),
            ).fetchall()
        rows.sort(key=lambda row: row["seq"])  # RETURNING order is unspecified; deliver oldest first
        return [
            QueueMessage(
                message_id=row["message_id"],
                receipt_handle=row["receipt_handle"],
                body=row["body"],
                receive_count=row["receive_count"],
            )
            for row in rows
        ]
