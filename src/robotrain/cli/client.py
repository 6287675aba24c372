"""The HTTP client the CLI's client commands use, the one error they end with, and how they print a paged listing."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

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
        self.has_token = bool(token)

    @property
    def http(self) -> httpx.Client:
        """The underlying client (base URL and token set), for streaming requests."""
        return self._http

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise CliError("connection_failed", f"cannot reach {self.url}: {exc}") from exc
        if response.is_error:
            raise server_error(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def stream_to(self, path: str, target: Path) -> int:
        try:
            with self._http.stream("GET", path) as response:
                if response.is_error:
                    response.read()
                    raise server_error(response)
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


def server_error(response: httpx.Response) -> CliError:
    try:
        error = response.json()["error"]
        return CliError(str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        return CliError(f"http_{response.status_code}", response.text[:200] or response.reason_phrase)


# --- listings ----------------------------------------------------------------------------------------------------


def add_paging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--cursor", help="the next page, as the previous listing printed it")


def print_page(
    api: ApiClient,
    path: str,
    args: argparse.Namespace,
    out: Callable[[str], None],
    line: Callable[[dict[str, Any]], str],
    **filters: Any,
) -> int:
    """One page of a `{"data", "next_cursor"}` listing: as JSON, or a line per item and how to ask for the next page."""
    params = {"limit": args.limit, "cursor": args.cursor, **filters}
    page = api.json("GET", path, params={name: value for name, value in params.items() if value is not None})
    if args.json:
        out(json.dumps(page))
        return 0
    for item in page["data"]:
        out(line(item))
    if page["next_cursor"]:
        out(f"(more: --cursor {page['next_cursor']})")
    return 0
