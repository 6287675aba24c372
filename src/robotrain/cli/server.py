"""The commands that run on the service's machine: `serve` (the embedded service) and `token` (a token signed by the
local key, for the embedded defaults)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from robotrain.cli.client import CliError
from robotrain.settings import Settings


def cmd_token(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    from robotrain.auth.local_keys import LocalKeys

    if not args.user:
        raise CliError("invalid_argument", "--user must not be empty")
    if args.ttl <= 0:
        raise CliError("invalid_argument", "--ttl must be a positive number of seconds")
    token = LocalKeys(_server_settings(args).data_dir).mint(args.user, ttl_s=args.ttl)
    out(json.dumps({"token": token, "user": args.user, "expires_in": args.ttl}) if args.json else token)
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

    from robotrain.entrypoints.local import local_app

    settings = _server_settings(args)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = local_app(settings)
    out(f"robotrain serving on http://{settings.host}:{settings.port} with data in {settings.data_dir}")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())
    return 0
