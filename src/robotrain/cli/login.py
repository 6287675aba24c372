"""`robotrain login` and `robotrain logout`: a personal API key (robotrain.apikeys) kept for the CLI.

Session tokens are short-lived (Clerk's live 60 s), so the CLI signs in once with one and keeps an API key instead:
`login` creates a key with the session token given by --token (or ROBOTRAIN_TOKEN), or stores a key made elsewhere
(--key), and writes it with the server's URL to `credentials.json` under the user's config directory
(XDG_CONFIG_HOME or ~/.config, then robotrain/), readable by the user alone (0600, in a 0700 directory). Every other
command uses that key when no --token or ROBOTRAIN_TOKEN is given, and its URL when no --url or ROBOTRAIN_URL is.
`logout` revokes the key on the server and deletes the file."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from robotrain.cli.client import ApiClient, CliError


@dataclass(frozen=True)
class StoredKey:
    url: str
    key: str
    key_id: str
    name: str


def load_key(path: Path) -> StoredKey | None:
    """The stored key, or None when there is none. A file that cannot be read as one is an error, not a login."""
    try:
        data = json.loads(path.read_text())
        return StoredKey(url=str(data["url"]), key=str(data["key"]), key_id=str(data["key_id"]), name=str(data["name"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CliError("credentials_unreadable", f"cannot read {path} ({exc}); remove it and log in again") from exc


def save_key(path: Path, stored: StoredKey) -> None:
    """Write atomically, created with mode 0600 (never readable by others, not even for a moment)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(asdict(stored), file)
        file.write("\n")
    os.replace(partial, path)


def cmd_login(api: ApiClient, args: argparse.Namespace, out: Callable[[str], None], credentials: Path) -> int:
    if args.key:
        api.json("GET", "/api-keys", headers={"Authorization": f"Bearer {args.key}"})  # 401 unless it works
        # Which of its owner's keys it is cannot be told from the list: logout then leaves revoking it to the user.
        save_key(credentials, StoredKey(url=api.url, key=args.key, key_id="", name="given with --key"))
        if args.json:
            out(json.dumps({"url": api.url, "id": None, "name": None, "saved_to": str(credentials)}))
        else:
            out(f"logged in to {api.url} with the given API key; saved to {credentials}")
        return 0
    if not api.has_token:
        raise CliError(
            "token_required",
            "log in with a session token (--token or ROBOTRAIN_TOKEN: a Clerk session token, or `robotrain token` "
            "on a local server), or store an existing key with --key",
        )
    body: dict[str, object] = {"name": args.name or f"robotrain CLI on {socket.gethostname()}"[:100]}
    if args.expires_in_days is not None:
        body["expires_in_days"] = args.expires_in_days
    created = api.json("POST", "/api-keys", json=body)
    save_key(credentials, StoredKey(url=api.url, key=created["key"], key_id=created["id"], name=created["name"]))
    if args.json:  # the key's secret stays in the file, not on the screen
        listed = {name: created[name] for name in ("id", "name", "created_at", "expires_at")}
        out(json.dumps({"url": api.url, **listed, "saved_to": str(credentials)}))
        return 0
    expiry = f", expires {created['expires_at'][:10]}" if created["expires_at"] else ""
    out(f"logged in to {api.url}: API key {created['name']!r} ({created['id']}{expiry}) saved to {credentials}")
    return 0


def cmd_logout(api: ApiClient, args: argparse.Namespace, out: Callable[[str], None], credentials: Path) -> int:
    stored = load_key(credentials)
    if stored is None:
        out(json.dumps({"logged_in": False}) if args.json else "not logged in")
        return 0
    revoked = False
    if stored.key_id:
        # Revoked on the server it was made for, whatever --url says: the key is never sent anywhere else.
        own = ApiClient(stored.url, stored.key)
        try:
            own.request("DELETE", f"/api-keys/{stored.key_id}")
            revoked = True
        except CliError as exc:
            if exc.code not in ("unauthorized", "api_key_not_found"):  # gone already: nothing left to revoke
                raise
        finally:
            own.close()
    credentials.unlink()
    if args.json:
        out(
            json.dumps({"logged_in": False, "revoked": stored.key_id if revoked else None, "removed": str(credentials)})
        )
    elif revoked:
        out(f"revoked API key {stored.name!r} ({stored.key_id}) on {stored.url}; removed {credentials}")
    elif not stored.key_id:
        out(f"the stored key was given with --key; revoke it on {stored.url} if it should stop working")
        out(f"removed {credentials}")
    else:
        out(f"removed {credentials}")
    return 0
