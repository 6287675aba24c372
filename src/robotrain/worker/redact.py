"""What a user may see of a failure: one line, without host paths. The worker writes tracebacks to its own log
(with an error id a user can quote) and gives the job this instead."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from pathlib import Path

# An absolute path not inside a URI (`file:///x`, `s3://b/k` are the user's own input): a slash that follows no word
# character, colon, slash or dot, then at least one character that is not a separator.
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])/[^\s'\"`,;:()\[\]{}<>]+")
MAX_CAUSE = 300


def new_error_id() -> str:
    return "err_" + uuid.uuid4().hex[:16]


def redact_paths(text: str, known: Mapping[Path, str]) -> str:
    """`text` with each known directory replaced by its label (an empty label makes paths below it relative) and
    any other absolute path replaced by `<path>`."""
    forms: dict[str, str] = {}
    for path, label in known.items():
        for form in (str(path), str(Path(path).absolute()), str(Path(path).resolve())):
            forms[form] = label
    for form in sorted(forms, key=len, reverse=True):  # the longest first: a job dir inside the data dir
        label = forms[form]
        text = text.replace(form + "/", f"{label}/" if label else "").replace(form, label or ".")
    return _ABSOLUTE_PATH.sub("<path>", text)


def one_line_cause(error: BaseException, known: Mapping[Path, str]) -> str:
    """`Type: first line of the message`, redacted and cut to MAX_CAUSE characters."""
    lines = str(error).strip().splitlines()
    cause = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    cause = redact_paths(cause, known)
    return cause if len(cause) <= MAX_CAUSE else cause[: MAX_CAUSE - 1] + "…"
