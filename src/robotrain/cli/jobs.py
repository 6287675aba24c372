"""The client commands: submit, list, show, logs, cancel, retry, download, each one request (or a poll) against the
API as the user the token names."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from robotrain.cli.client import ApiClient, CliError
from robotrain.cli.datasets import local_dataset, upload

TERMINAL = ("succeeded", "failed", "cancelled")
POLL_INTERVAL_S = 1.0


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
    dataset = spec.get("dataset") if isinstance(spec, dict) else None
    if isinstance(dataset, dict) and (directory := local_dataset(dataset.get("uri"))) is not None:
        # a local directory: upload it first, and train on the upload
        uploaded = upload(api, directory)
        dataset["uri"] = uploaded["uri"]
        out(f"uploaded {directory} as {uploaded['uri']}")
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
