"""Following a job's event stream (GET /jobs/{id}/events as server-sent events, read with httpx-sse): status
changes and log lines as lines, training progress as a rich progress bar (step, loss, samples/s, ETA) on a
terminal, or as `step N/M ...` lines when the output is not one; NDJSON with --json.

A dropped connection, or a stream the server ends at its time limit, is resumed with Last-Event-ID, so nothing is
lost or repeated; the stream's `end` event (or a 204 on resuming after the end) finishes it."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
from httpx_sse import SSEError, connect_sse
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from robotrain.cli.client import ApiClient, CliError, server_error

RECONNECT_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)
GIVE_UP_AFTER_S = 60.0  # of failed reconnects in a row


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.4g}"


class ProgressView:
    """Step, loss, samples/s and ETA: a live bar on a terminal, a line per new step otherwise."""

    def __init__(self, out: Callable[[str], None], *, live: bool):
        self._out = out
        self._bar: Progress | None = None
        self._task: Any = None
        self._live = live
        self.step = 0
        self.total = 0
        self.loss: float | None = None
        self.samples_per_s: float | None = None
        self._printed_step = -1
        self._first: tuple[float, int] | None = None  # (time, step) at the first progress seen

    def update(self, *, step: int | None = None, total: int | None = None, metrics: dict[str, float] | None = None):
        if total:
            self.total = total
        if step is not None and step >= self.step:
            self.step = step
        for name, value in (metrics or {}).items():
            if name == "train/loss":
                self.loss = value
            elif name == "train/samples_per_s":
                self.samples_per_s = value
        if self.step and self._first is None:
            self._first = (time.monotonic(), self.step)
        self._render()

    def eta_s(self) -> float | None:
        if self._first is None or not self.total or self.step <= self._first[1]:
            return None
        rate = (self.step - self._first[1]) / max(1e-6, time.monotonic() - self._first[0])
        return (self.total - self.step) / rate if rate > 0 else None

    def _render(self) -> None:
        if not self.step:
            return
        fields = f"loss {_fmt(self.loss)}  samples/s {_fmt(self.samples_per_s)}"
        if self._live:
            if self._bar is None:
                self._bar = Progress(
                    TextColumn("[bold]training"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"),
                    TimeRemainingColumn(),
                    console=Console(file=sys.stderr),
                    transient=False,
                )
                self._bar.start()
                self._task = self._bar.add_task("training", total=self.total or None, info="")
            self._bar.update(self._task, completed=self.step, total=self.total or None, info=fields)
            return
        if self.step != self._printed_step:
            self._printed_step = self.step
            eta = self.eta_s()
            eta_text = f"  eta {int(eta)}s" if eta is not None else ""
            self._out(f"step {self.step}/{self.total}  {fields}{eta_text}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def follow(
    api: ApiClient,
    job_id: str,
    out: Callable[[str], None],
    *,
    progress: bool = True,
    as_json: bool = False,
    live: bool | None = None,
) -> dict[str, Any]:
    """Print the job's stream until it ends; return the final job."""
    view = ProgressView(out, live=sys.stderr.isatty() if live is None else live) if progress and not as_json else None
    last_id: str | None = None
    if view is not None:  # the total steps, before any progress arrives
        _show("job", api.json("GET", f"/jobs/{job_id}"), out, view)
    failing_since: float | None = None
    tries = 0
    try:
        while True:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                with connect_sse(api.http, "GET", f"/jobs/{job_id}/events", headers=headers) as source:
                    response = source.response
                    if response.status_code == 204:  # resumed after the end: nothing more to send
                        return api.json("GET", f"/jobs/{job_id}")
                    if response.is_error:
                        response.read()
                        raise server_error(response)
                    failing_since, tries = None, 0
                    for event in source.iter_sse():
                        if event.id:
                            last_id = event.id
                        if not event.data:
                            continue
                        data = json.loads(event.data)
                        if as_json:
                            out(json.dumps({"event": event.event, "id": event.id or None, "data": data}))
                        if event.event == "end":
                            return api.json("GET", f"/jobs/{job_id}")  # the job as it ended, whatever was missed
                        if not as_json:
                            _show(event.event, data, out, view)
            except (httpx.TransportError, SSEError) as exc:
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > GIVE_UP_AFTER_S:
                    raise CliError("connection_failed", f"lost the event stream of {job_id}: {exc}") from exc
            # the stream closed without `end` (the server's time limit) or dropped: resume after the last event
            time.sleep(RECONNECT_DELAYS_S[min(tries, len(RECONNECT_DELAYS_S) - 1)])
            tries += 1
    finally:
        if view is not None:
            view.close()


def _show(kind: str, data: dict[str, Any], out: Callable[[str], None], view: ProgressView | None) -> None:
    if kind in ("status", "log"):
        out(f"[{kind}] {data['message']}")
    elif kind == "job" and view is not None:
        progress = data.get("progress") or {}
        view.update(total=progress.get("total_steps") or ((data.get("spec") or {}).get("training") or {}).get("steps"))
        if data.get("status") == "running":
            view.update(step=progress.get("step"), metrics=progress.get("metrics"))
    elif kind == "metrics" and view is not None:
        series: dict[str, list[list[Any]]] = data.get("series", {})
        latest_step = max((points[-1][0] for points in series.values() if points), default=None)
        if latest_step is None:
            return
        at_step = {name: points[-1][1] for name, points in series.items() if points and points[-1][0] == latest_step}
        view.update(step=latest_step, metrics={k: v for k, v in at_step.items() if isinstance(v, int | float)})
