"""`python -m robotrain.entrypoints.worker JOB_ID ATTEMPT`: one worker process, as the SubprocessLauncher starts
it. Its settings come from the environment the launcher gave it."""

from __future__ import annotations

import logging
import sys

from robotrain.settings import Settings
from robotrain.wiring import build_components
from robotrain.worker.runner import run_worker


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not args[1].isdigit():
        print("usage: python -m robotrain.entrypoints.worker JOB_ID ATTEMPT", file=sys.stderr)
        return 2
    settings = Settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_worker(build_components(settings), args[0], int(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
