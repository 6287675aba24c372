"""`robotrain`: run the server (`serve`), mint a local token (`token`), and drive jobs over HTTP as a client
(`submit`, `list`, `show`, `logs`, `cancel`, `retry`, `download`).

The client commands talk to --url (or ROBOTRAIN_URL) with --token (or ROBOTRAIN_TOKEN). A server error is printed
as one line, `error <code>: <message>`, and the command exits with status 1."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from robotrain.settings import ClientSettings, Settings

TERMINAL = ("succeeded", "failed", "cancelled")
POLL_INTERVAL_S = 1.0
REQUEST_TIMEOUT_S = 30.0


class CliError(Exception):
    """Ends the command with `error <code>: <message>` on stderr and exit status 1."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# --- the HTTP client --------------------------------------------------------------------------------------------


class ApiClient:
    def __init__(self, url: str, token: str | None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=REQUEST_TIMEOUT_S)
        self.url = url

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise CliError("connection_failed", f"cannot reach {self.url}: {exc}") from exc
        if response.is_error:
            raise _server_error(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def stream_to(self, path: str, target: Path) -> int:
        try:
            with self._http.stream("GET", path) as response:
                if response.is_error:
                    response.read()
                    raise _server_error(response)
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".part")
                size = 0
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        size += len(chunk)
                partial.replace(target)
                return size
        except httpx.TransportError as exc:
            raise CliError("connection_failed", f"cannot reach {self.url}: {exc}") from exc


def _server_error(response: httpx.Response) -> CliError:
    try:
        error = response.json()["error"]
        return CliError(str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        return CliError(f"http_{response.status_code}", response.text[:200] or response.reason_phrase)


# --- output -----------------------------------------------------------------------------------------------------


def _format_metrics(metrics: dict[str, float]) -> str:
    shown = []
    for name in sorted(metrics):
        label = name.split("/")[-1] if name.startswith("train/") else name
        shown.append(f"{label} {metrics[name]:.4g}")
    return " ".join(shown)


def _job_line(job: dict[str, Any]) -> str:
    return f"{job['id']}  {job['status']:<9}  {job['created_at'][:19]}  {job['name']}"


def _success_rate(result: dict[str, Any]) -> float | None:
    evaluation = result.get("eval") or {}
    if "pc_success" in evaluation:
        return float(evaluation["pc_success"])
    final = result.get("final_metrics") or {}
    if "eval/pc_success" in final:
        return float(final["eval/pc_success"])
    return None


def _summary(job: dict[str, Any], out: Callable[[str], None]) -> None:
    if job["status"] == "succeeded":
        result = job.get("result") or {}
        rate = _success_rate(result)
        out(f"eval success rate: {rate:.1f}%" if rate is not None else "eval: not run")
        checkpoint = result.get("checkpoint")
        if checkpoint:
            out(f"checkpoint: {checkpoint} (robotrain download {job['id']} --out DIR)")
    elif job.get("error"):
        out(f"{job['status']}: {job['error']['code']}: {job['error']['message']}")
    else:
        out(job["status"])


# --- commands ---------------------------------------------------------------------------------------------------


def _follow(api: ApiClient, job_id: str, out: Callable[[str], None], *, logs_only: bool = False) -> dict[str, Any]:
    """Print the job's events and progress until it is terminal; return the final job."""
    after = 0
    last_step: int | None = None
    while True:
        job = api.json("GET", f"/jobs/{job_id}")
        while True:
            events = api.json("GET", f"/jobs/{job_id}/events", params={"after": after})["data"]
            for event in events:
                after = max(after, int(event["id"]))
                prefix = "status" if event["kind"] == "status" else "log"
                out(f"[{prefix}] {event['message']}")
            if len(events) < 500:
                break
        progress = job["progress"]
        if not logs_only and job["status"] == "running" and progress["step"] and progress["step"] != last_step:
            last_step = progress["step"]
            out(f"step {progress['step']}/{progress['total_steps']} {_format_metrics(progress['metrics'])}".rstrip())
        if job["status"] in TERMINAL:
            return job
        time.sleep(POLL_INTERVAL_S)


def cmd_submit(api: ApiClient, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    path = Path(args.spec)
    try:
        spec = json.loads(path.read_text())
    except OSError as exc:
        raise CliError("spec_unreadable", f"cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise CliError("spec_invalid_json", f"{path} is not JSON: {exc}") from exc
    job = api.json("POST", "/jobs", json=spec)
    out(f"submitted {job['id']} ({job['status']})")
    if not args.follow:
        return 0
    job = _follow(api, job["id"], out)
    _summary(job, out)
    return 0 if job["status"] == "succeeded" else 1


def cmd_list(api: ApiClient, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    page = api.json("GET", "/jobs", params=params)
    for job in page["data"]:
        out(_job_line(job))
    if page["next_cursor"]:
        out(f"(more: --cursor {page['next_cursor']})")
    return 0


def cmd_show(api: ApiClient, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    out(json.dumps(api.json("GET", f"/jobs/{args.job_id}"), indent=2))
    return 0


def cmd_logs(api: ApiClient, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    if args.follow:
        job = _follow(api, args.job_id, out, logs_only=True)
        return 0 if job["status"] == "succeeded" else 1
    after = 0
    while True:
        events = api.json("GET", f"/jobs/{args.job_id}/events", params={"after": after})["data"]
        for event in events:
            after = max(after, int(event["id"]))
            out(f"{event['at'][:19]}  [{event['kind']}] {event['message']}")
        if len(events) < 500:
            return 0


def cmd_cancel(api: ApiClient, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    job = api.json("POST", f"/jobs/{args.job_id}/cancel")
    out(f"{job['id']} {job['status']}")
    return 0


def cmd_retry(api: ApiClient, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    job = api.json("POST", f"/jobs/{args.job_id}/retry")
    out(f"submitted {job['id']} ({job['status']}, retry of {job['retry_of']})")
    return 0


def _safe_target(out_dir: Path, relative: str) -> Path:
    """The local file for an artifact path; refuses paths that would leave out_dir."""
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or any(part in ("..", "") for part in parts):
        raise CliError("unsafe_path", f"refusing to write artifact path {relative!r}")
    return out_dir.joinpath(*parts)


def cmd_download(api: ApiClient, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    out_dir = Path(args.out) if args.out else Path(args.job_id)
    if args.path:
        paths = [args.path]
    else:
        paths = [item["path"] for item in api.json("GET", f"/jobs/{args.job_id}/artifacts")["data"]]
        if not paths:
            out(f"{args.job_id} has no artifacts yet")
            return 0
    for relative in paths:
        target = _safe_target(out_dir, relative)
        size = api.stream_to(f"/jobs/{args.job_id}/artifacts/{relative}", target)
        out(f"{target} ({size} bytes)")
    return 0


def cmd_token(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    from robotrain.auth.local_keys import LocalKeys

    if not args.user:
        raise CliError("invalid_argument", "--user must not be empty")
    if args.ttl <= 0:
        raise CliError("invalid_argument", "--ttl must be a positive number of seconds")
    out(LocalKeys(_server_settings(args).data_dir).mint(args.user, ttl_s=args.ttl))
    return 0


def _server_settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with the command's flags on top; the data dir made absolute so worker
    processes started from elsewhere find the same state."""
    overrides: dict[str, Any] = {}
    for name in ("host", "port", "data_dir"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    overrides["data_dir"] = Settings(**overrides).data_dir.resolve()
    return Settings(**overrides)


def cmd_serve(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    import logging

    import uvicorn

    from robotrain.api.app import create_app

    settings = _server_settings(args)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    out(f"robotrain serving on http://{settings.host}:{settings.port} with data in {settings.data_dir}")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())
    return 0


# --- entry point ------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robotrain", description="Train robot policies as a service.")
    parser.add_argument("--url", help="server URL (default: ROBOTRAIN_URL or http://127.0.0.1:8000)")
    parser.add_argument("--token", help="bearer token (default: ROBOTRAIN_TOKEN)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the API server with the local dispatcher")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--data-dir", type=Path, help="state directory (default: ./.robotrain)")

    token = commands.add_parser("token", help="print a bearer token signed by the local key")
    token.add_argument("--user", required=True)
    token.add_argument("--data-dir", type=Path)
    token.add_argument("--ttl", type=int, default=24 * 3600, help="lifetime in seconds (default: one day)")

    submit = commands.add_parser("submit", help="submit a job from a training spec JSON file")
    submit.add_argument("spec")
    submit.add_argument("--follow", action="store_true", help="follow until the job ends")

    listing = commands.add_parser("list", help="list your jobs, newest first")
    listing.add_argument("--status", choices=["queued", "starting", "running", "succeeded", "failed", "cancelled"])
    listing.add_argument("--limit", type=int, default=20)

    for name, text in (("show", "print a job as JSON"), ("cancel", "cancel a job"), ("retry", "retry a job")):
        commands.add_parser(name, help=text).add_argument("job_id")

    logs = commands.add_parser("logs", help="print a job's events")
    logs.add_argument("job_id")
    logs.add_argument("--follow", action="store_true")

    download = commands.add_parser("download", help="download a job's artifacts (all, or one with --path)")
    download.add_argument("job_id")
    download.add_argument("--path")
    download.add_argument("--out", help="directory to write into (default: ./JOB_ID)")
    return parser


CLIENT_COMMANDS = {
    "submit": cmd_submit,
    "list": cmd_list,
    "show": cmd_show,
    "logs": cmd_logs,
    "cancel": cmd_cancel,
    "retry": cmd_retry,
    "download": cmd_download,
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
        token = args.token or (client_settings.token.get_secret_value() if client_settings.token else None)
        api = ApiClient(args.url or client_settings.url, token)
        try:
            return CLIENT_COMMANDS[args.command](api, args, out)
        finally:
            api.close()
    except CliError as exc:
        print(f"error {exc.code}: {exc.message}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
