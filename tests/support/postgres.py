"""A throwaway PostgreSQL 15 cluster for one test session, plus a database with Supabase's bootstrap and our
migrations applied.

The cluster lives in a temp directory, listens on a Unix socket in that directory only (no TCP port, so no port
races and nothing reachable from outside), trusts local connections, and runs with fsync off (its data is thrown
away). initdb refuses to run as root, so as root every PostgreSQL binary runs as the `postgres` user via runuser.
`cluster()` always stops the server and deletes the directory, even when a test fails.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

PG_BIN = Path("/usr/lib/postgresql/15/bin")
REPO_ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS_DIR = REPO_ROOT / "supabase" / "migrations"
BOOTSTRAP_SQL = Path(__file__).with_name("supabase_bootstrap.sql")
SUPERUSER = "postgres"


@dataclass(frozen=True)
class Cluster:
    socket_dir: Path
    port: int

    def conninfo(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        return psycopg.conninfo.make_conninfo(host=str(self.socket_dir), port=self.port, dbname=dbname, user=user)

    def connect(self, dbname: str = "postgres", user: str = SUPERUSER, **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.conninfo(dbname, user), **kwargs)


def _as_postgres_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def _run(command: list[str]) -> None:
    result = subprocess.run(_as_postgres_user(command), capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


@contextmanager
def cluster(port: int = 5432) -> Iterator[Cluster]:
    """initdb + pg_ctl start in a fresh temp directory; stop and delete it afterwards."""
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(
            f"PostgreSQL 15 is not installed ({PG_BIN}/initdb is missing); apt-get install postgresql-15"
        )
    root = Path(tempfile.mkdtemp(prefix="robotrain-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
    data_dir, log_file = root / "data", root / "server.log"
    started = False
    try:
        _run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{root}' -c port={port} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c timezone=UTC -c max_connections=50"
        )
        _run(
            [str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-l", str(log_file), "-w", "-t", "60", "-o", options, "start"]
        )
        started = True
        yield Cluster(socket_dir=root, port=port)
    finally:
        if started:
            _run([str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)


def migration_files() -> list[Path]:
    """supabase/migrations/*.sql in the order the Supabase CLI applies them (by their timestamp prefix)."""
    return sorted(MIGRATIONS_DIR.glob("*.sql"))


def create_database(target: Cluster, dbname: str, *, migrations: list[Path] | None = None) -> str:
    """A fresh database with the Supabase bootstrap and the given migrations (default: all) applied, as the
    superuser, the way `supabase db push` runs them. Returns its name."""
    with target.connect(autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("drop database if exists {} with (force)").format(psycopg.sql.Identifier(dbname)))
        admin.execute(psycopg.sql.SQL("create database {}").format(psycopg.sql.Identifier(dbname)))
    with target.connect(dbname) as conn:
        conn.execute(BOOTSTRAP_SQL.read_text())
        for path in migration_files() if migrations is None else migrations:
            conn.execute(path.read_text())
    return dbname
