#!/usr/bin/env bash
# Checks (and where needed prepares) what the test suite needs that the tests cannot start themselves.
# - moto: started by the tests (tests/support/moto.py).
# - PostgreSQL 15: the tests start their own throwaway cluster (initdb + pg_ctl in a temp dir, Unix socket only,
#   stopped and deleted at the end of the session; tests/support/postgres.py). The machine's own cluster
#   (`pg_ctlcluster 15 main`) is deliberately left alone, so no shared state leaks between runs. This script only
#   makes sure the binaries and the `postgres` user (needed when running as root, since initdb refuses root) exist.
# Idempotent; safe to run as root or as a normal user.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin

if [[ ! -x "$PG_BIN/initdb" || ! -x "$PG_BIN/pg_ctl" ]]; then
    echo "test services: PostgreSQL 15 is not installed ($PG_BIN/initdb missing); install postgresql-15" >&2
    exit 1
fi
if [[ "$(id -u)" == 0 ]]; then
    if ! id -u postgres >/dev/null 2>&1; then
        echo "test services: running as root needs a 'postgres' user to run initdb (install postgresql-15)" >&2
        exit 1
    fi
    if ! command -v runuser >/dev/null 2>&1; then
        echo "test services: running as root needs runuser (util-linux) to run PostgreSQL as 'postgres'" >&2
        exit 1
    fi
    # the throwaway clusters live under the temp dir; postgres must be able to reach it
    tmp="${TMPDIR:-/tmp}"
    if ! runuser -u postgres -- test -x "$tmp"; then
        echo "test services: the postgres user cannot enter $tmp (set TMPDIR to a world-searchable directory)" >&2
        exit 1
    fi
fi
echo "test services: PostgreSQL 15 found at $PG_BIN (tests start their own throwaway cluster); moto is started by the tests"

# Headless Chromium for the dashboard's browser tests (tests/e2e/test_dashboard.py), from Debian's own package; the
# tests drive it with Playwright's Python package pointed at /usr/bin/chromium (no browser download).
if [[ ! -x /usr/bin/chromium ]]; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "test services: installing Debian's chromium for the browser tests"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "test services: /usr/bin/chromium is missing (apt-get install chromium); the browser tests will skip" >&2
    fi
fi
echo "test services: chromium $(/usr/bin/chromium --version 2>/dev/null || echo 'not installed')"
