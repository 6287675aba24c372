"""`robotrain login` / `logout` against a real server (uvicorn on 127.0.0.1 in a thread, embedded components): the
key is created with a session token, kept in the user's config dir with mode 0600, used by the other commands when
no token is given, and revoked by logout."""

from __future__ import annotations

import json
import socket
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import uvicorn

from robotrain import cli
from robotrain.auth.local_keys import LocalKeys
from robotrain.settings import Settings
from robotrain.wiring import build_components
from tests.support.app import api_app


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uv = uvicorn.Server(
        uvicorn.Config(api_app(build_components(settings)), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def session(tmp_path: Path) -> str:
    return LocalKeys(tmp_path / "data").mint("alice", ttl_s=60)  # as short-lived as a Clerk session token


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("ROBOTRAIN_URL", "ROBOTRAIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


def test_login_stores_a_key_the_other_commands_use_and_logout_revokes_it(server, session, config_home, capsys) -> None:
    assert cli.main(["--url", server, "--token", session, "login", "--name", "laptop"]) == 0
    credentials = config_home / "robotrain" / "credentials.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert stat.S_IMODE(credentials.parent.stat().st_mode) == 0o700
    stored = json.loads(credentials.read_text())
    assert stored["url"] == server and stored["key"].startswith("rt_") and stored["name"] == "laptop"
    assert "laptop" in capsys.readouterr().out

    assert cli.main(["list"]) == 0  # no --url, no --token: the stored ones
    assert httpx.get(f"{server}/jobs", headers={"Authorization": f"Bearer {stored['key']}"}).status_code == 200

    assert cli.main(["logout"]) == 0
    assert not credentials.exists()
    assert httpx.get(f"{server}/jobs", headers={"Authorization": f"Bearer {stored['key']}"}).status_code == 401
    assert cli.main(["--url", server, "list"]) == 1  # logged out: no credentials at all


def test_an_api_key_cannot_log_in_to_make_another(server, session, config_home, capsys) -> None:
    assert cli.main(["--url", server, "--token", session, "login"]) == 0
    key = json.loads((config_home / "robotrain" / "credentials.json").read_text())["key"]
    capsys.readouterr()

    assert cli.main(["--url", server, "--token", key, "login"]) == 1
    assert "api_key_not_allowed" in capsys.readouterr().err


def test_login_with_an_existing_key_checks_it_and_stores_it(server, session, config_home) -> None:
    created = httpx.post(
        f"{server}/api-keys", json={"name": "from the dashboard"}, headers={"Authorization": f"Bearer {session}"}
    ).json()

    assert cli.main(["--url", server, "login", "--key", created["key"][:-1] + "x"]) == 1  # a wrong key is refused
    assert not (config_home / "robotrain" / "credentials.json").exists()
    assert cli.main(["--url", server, "login", "--key", created["key"]]) == 0
    assert cli.main(["list"]) == 0


def test_a_stored_key_is_never_sent_to_another_server(server, session, config_home) -> None:
    assert cli.main(["--url", server, "--token", session, "login"]) == 0
    authorizations: list[str | None] = []

    class Other(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server naming
            authorizations.append(self.headers.get("Authorization"))
            body = b'{"data": [], "next_cursor": null}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), Other)
    thread = threading.Thread(target=other.serve_forever, daemon=True)
    thread.start()
    try:
        assert cli.main(["--url", f"http://127.0.0.1:{other.server_address[1]}", "list"]) == 0
    finally:
        other.shutdown()
        other.server_close()
    assert authorizations == [None]


def test_login_and_logout_speak_json_without_printing_the_secret(server, session, config_home, capsys) -> None:
    assert cli.main(["--url", server, "--token", session, "login", "--name", "ci", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    stored = json.loads((config_home / "robotrain" / "credentials.json").read_text())
    assert answer["name"] == "ci" and answer["id"] == stored["key_id"] and stored["key"] not in json.dumps(answer)

    assert cli.main(["logout", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "logged_in": False,
        "revoked": stored["key_id"],
        "removed": str(config_home / "robotrain" / "credentials.json"),
    }
