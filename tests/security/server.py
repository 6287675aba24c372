"""`robotrain serve` as a real subprocess on a free 127.0.0.1 port, for tests that must go over HTTP to a real
server (its own event loop, threadpool and key cache)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(data_dir: Path, env: dict[str, str], *, startup_timeout_s: float = 45) -> Iterator[str]:
    """Start the server with exactly these ROBOTRAIN_*/CLERK_* variables (the rest of the environment minus any
    such variable), yield its base URL once /healthz answers, and stop it (SIGTERM, then SIGKILL) afterwards."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ROBOTRAIN_", "CLERK_", "SUPABASE_", "SQS_"))}
    log_path = data_dir / "server.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(BIN / "robotrain"), "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)],
            env=clean | {"ROBOTRAIN_LOG_LEVEL": "WARNING"} | env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not answer within {startup_timeout_s}s")
            time.sleep(0.1)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
