"""The client commands: submit, list, show, logs, cancel, retry, download, each one request (or a poll) against the
API as the user the token names."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from robotrain.cli.client import ApiClient, CliError, print_page
from robotrain.cli.datasets import local_dataset, upload
from robotrain.cli.follow import follow


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


def exit_code(job: dict[str, Any]) -> int:
    """0 when the job succeeded, 1 when it failed, 3 when it was cancelled (scripts can tell them apart)."""
    return {"succeeded": 0, "cancelled": 3}.get(job["status"], 1)


def cmd_submit(api: ApiClient, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    path = Path(args.spec)
    try:
        spec = json.loads(path.read_text())
    except OSError as exc:
        raise CliError("spec_unreadable", f"cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise CliError("spec_invalid_json", f"{path} is not JSON: {exc}") from exc
    dataset = spec.get("dataset") if isinstance(spec, dict) else None
    if isinstance(dataset, dict) and (directory := local_dataset(dataset.get("uri"))) is not None:
        # a local directory: upload it first, and train on the upload
        uploaded = upload(api, directory)
        dataset["uri"] = uploaded["uri"]
        out(f"uploaded {directory} as {uploaded['uri']}")
    job = api.json("POST", "/jobs", json=spec)
    if args.json:
        out(json.dumps(job))
    else:
        out(f"submitted {job['id']} ({job['status']})")
    if not args.follow:
        return 0
    job = follow(api, job["id"], out, as_json=args.json)
    if args.json:
        out(json.dumps(job))
    else:
        _summary(job, out)
    return exit_code(job)


def cmd_list(api: ApiClient, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    return print_page(api, "/jobs", args, out, _job_line, status=args.status)


def cmd_show(api: ApiClient, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    job = api.json("GET", f"/jobs/{args.job_id}")
    out(json.dumps(job) if args.json else json.dumps(job, indent=2))
    return 0


def cmd_logs(api: ApiClient, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    if args.follow:
        job = follow(api, args.job_id, out, progress=True, as_json=args.json)
        return exit_code(job)
    after = 0
    while True:
        events = api.json("GET", f"/jobs/{args.job_id}/events", params={"after": after})["data"]
        for event in events:
            after = max(after, int(event["id"]))
            if args.json:
                out(json.dumps(event))
            else:
                out(f"{event['at'][:19]}  [{event['kind']}] {event['message']}")
        if len(events) < 500:
            return 0


def cmd_cancel(api: ApiClient, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    job = api.json("POST", f"/jobs/{args.job_id}/cancel")
    out(json.dumps(job) if args.json else f"{job['id']} {job['status']}")
    return 0


def cmd_retry(api: ApiClient, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    job = api.json("POST", f"/jobs/{args.job_id}/retry")
    out(json.dumps(job) if args.json else f"submitted {job['id']} ({job['status']}, retry of {job['retry_of']})")
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
            out(json.dumps({"files": []}) if args.json else f"{args.job_id} has no artifacts yet")
            return 0
    files = []
    for relative in paths:
        target = _safe_target(out_dir, relative)
        size = api.stream_to(f"/jobs/{args.job_id}/artifacts/{relative}", target)
        files.append({"path": relative, "file": str(target), "size": size})
        if not args.json:
            out(f"{target} ({size} bytes)")
    if args.json:
        out(json.dumps({"files": files}))
    return 0


def dashboard_url(base_url: str, job_id: str) -> str:
    """The dashboard's page of a job: the API's base URL (it serves the dashboard at /) + the job's route."""
    return f"{base_url.rstrip('/')}/#/jobs/{job_id}"


def cmd_open(api: ApiClient, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    url = dashboard_url(api.url, args.job_id)
    if args.json:
        out(json.dumps({"url": url}))
    else:
        out(url)
    if args.browser:
        import webbrowser

        webbrowser.open(url)
    return 0
