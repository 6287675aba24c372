"""`robotrain`: run the server (`serve`), mint a local token (`token`), and drive jobs over HTTP as a client
(`submit`, `list`, `show`, `logs`, `cancel`, `retry`, `download`, `open`, `datasets upload|list|rm`). Every client
command (and `token`) takes `--json` for scripts.

The client commands talk to --url (or ROBOTRAIN_URL) with --token (or ROBOTRAIN_TOKEN); without them, with the URL
and API key that `robotrain login` stored (robotrain.cli.login). A server error is printed as one line,
`error <code>: <message>`, and the command exits with status 1."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from robotrain.cli.client import ApiClient, CliError, add_paging
from robotrain.cli.datasets import add_parser as add_datasets_parser
from robotrain.cli.datasets import cmd_datasets
from robotrain.cli.jobs import (
    _safe_target,
    cmd_cancel,
    cmd_download,
    cmd_list,
    cmd_logs,
    cmd_open,
    cmd_retry,
    cmd_show,
    cmd_submit,
)
from robotrain.cli.login import cmd_login, cmd_logout, load_key
from robotrain.cli.server import cmd_serve, cmd_token
from robotrain.settings import ClientSettings

__all__ = ["ApiClient", "CliError", "_safe_target", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robotrain", description="Train robot policies as a service.")
    parser.add_argument("--url", help="server URL (default: ROBOTRAIN_URL or http://127.0.0.1:8000)")
    parser.add_argument("--token", help="bearer token (default: ROBOTRAIN_TOKEN)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON (NDJSON while following) for scripts")

    serve = commands.add_parser("serve", help="run the API server with the local dispatcher")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--data-dir", type=Path, help="state directory (default: ./.robotrain)")

    token = commands.add_parser("token", parents=[as_json], help="print a bearer token signed by the local key")
    token.add_argument("--user", required=True)
    token.add_argument("--data-dir", type=Path)
    token.add_argument("--ttl", type=int, default=24 * 3600, help="lifetime in seconds (default: one day)")

    submit = commands.add_parser("submit", parents=[as_json], help="submit a job from a training spec JSON file")
    submit.add_argument("spec")
    submit.add_argument(
        "--follow", action="store_true", help="follow until the job ends (exit 0 succeeded, 1 failed, 3 cancelled)"
    )

    listing = commands.add_parser("list", parents=[as_json], help="list your jobs, newest first")
    listing.add_argument("--status", choices=["queued", "starting", "running", "succeeded", "failed", "cancelled"])
    add_paging(listing)

    for name, text in (("show", "print a job as JSON"), ("cancel", "cancel a job"), ("retry", "retry a job")):
        commands.add_parser(name, parents=[as_json], help=text).add_argument("job_id")

    logs = commands.add_parser("logs", parents=[as_json], help="print a job's events")
    logs.add_argument("job_id")
    logs.add_argument("--follow", action="store_true", help="follow the live stream until the job ends")

    login = commands.add_parser(
        "login", parents=[as_json], help="create an API key with a session token (or store --key) for the CLI"
    )
    login.add_argument("--name", help="what the key is for (default: robotrain CLI on <host>)")
    login.add_argument("--expires-in-days", type=int, help="default: the key does not expire")
    login.add_argument("--key", help="store this existing API key (rt_...) instead of creating one")
    commands.add_parser("logout", parents=[as_json], help="revoke the stored API key and delete it")

    download = commands.add_parser(
        "download", parents=[as_json], help="download a job's artifacts (all, or one with --path)"
    )
    download.add_argument("job_id")
    download.add_argument("--path")
    download.add_argument("--out", help="directory to write into (default: ./JOB_ID)")

    opening = commands.add_parser("open", parents=[as_json], help="print the dashboard URL of a job")
    opening.add_argument("job_id")
    opening.add_argument("--browser", action="store_true", help="also open it in the default browser")
    add_datasets_parser(commands, as_json)
    return parser


CLIENT_COMMANDS = {
    "submit": cmd_submit,
    "list": cmd_list,
    "show": cmd_show,
    "logs": cmd_logs,
    "cancel": cmd_cancel,
    "retry": cmd_retry,
    "download": cmd_download,
    "open": cmd_open,
    "datasets": cmd_datasets,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def out(line: str) -> None:
        print(line, flush=True)

    try:
        if args.command == "serve":
            return cmd_serve(args, out)
        if args.command == "token":
            return cmd_token(args, out)
        client_settings = ClientSettings()
        credentials = client_settings.credentials_file
        token = args.token or (client_settings.token.get_secret_value() if client_settings.token else None)
        url_given = args.url or ("url" in client_settings.model_fields_set and client_settings.url)
        # What `login` stored: read only when something is missing (a corrupt file never blocks --url/--token use).
        stored = load_key(credentials) if token is None or not url_given or args.command == "logout" else None
        url = url_given or (stored.url if stored is not None else client_settings.url)
        if token is None and stored is not None and args.command != "login" and _same(stored.url, url):
            token = stored.key  # the key `login` stored, only for the server it was made for
        api = ApiClient(url, token)
        try:
            if args.command == "login":
                return cmd_login(api, args, out, credentials)
            if args.command == "logout":
                return cmd_logout(api, args, out, credentials)
            return CLIENT_COMMANDS[args.command](api, args, out)
        finally:
            api.close()
    except CliError as exc:
        print(f"error {exc.code}: {exc.message}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130


def _same(url: str, other: str) -> bool:
    return url.rstrip("/") == other.rstrip("/")


if __name__ == "__main__":
    sys.exit(main())
