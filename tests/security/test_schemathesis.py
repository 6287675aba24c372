"""Schemathesis against the app's own OpenAPI schema, in process over ASGI, on real embedded components (SQLite store,
local queue, local artifacts) in a temp dir with dispatch off: every generated request carries a valid token (the
internal route gets the internal token), and no answer may be a 5xx or differ from the schema (status codes,
content types, headers, bodies).

Bounded: a fixed number of examples per operation, derandomized, no deadline."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.strategies import from_regex
from schemathesis import checks
from schemathesis.openapi import from_asgi

from robotrain.auth.local_keys import LocalKeys
from robotrain.settings import Settings
from robotrain.wiring import build_components
from tests.security.conftest import INTERNAL_TOKEN
from tests.support.app import api_app
from training.spec import DATASET_URI_PATTERN, DatasetSpec

INTERNAL_ROUTE = "/jobs/{job_id}/status"
# Where "every schema-valid request is accepted" (positive_data_acceptance) cannot hold, and why; every other check
# still runs on these operations (no 5xx, status codes, content types, response schemas, invalid data refused).
# - GET /jobs?cursor= takes an opaque cursor only the server mints; any other string is rightly a 422.
# - POST /jobs: the policy configs have cross-field rules (model validators: e.g. action steps within the horizon)
#   that JSON schema cannot state, and each config's `type` has a default, so the schema does not mark the
#   discriminator required although the tagged union needs it (reported to the owner of training/policies).
RULES_THE_SCHEMA_CANNOT_STATE = {("GET", "/jobs"), ("POST", "/jobs")}
# Starlette's 405 lists in `Allow` only the methods of the first route that matched the path, not every route on it
# (POST /jobs answers OPTIONS with `Allow: POST`, leaving out GET). An HTTP-semantics gap in the framework's 405,
# not a schema mismatch; left to the owner of api/errors.py (reported).
EXCLUDED_EVERYWHERE = [checks.allow_header_conformance]
# POST /jobs: the spec models parse in pydantic's lax mode, so a JSON `false` where a number is due is read as 0.0
# (e.g. policy.ema_max_decay) instead of refused. A leniency of training/spec.py and the policy configs (reported to
# their owner), not a server fault; "schema-violating data is refused" is therefore not checked on that operation.
LAX_PARSING = {("POST", "/jobs")}


# parametrize needs the schema at import, and checks that send requests of their own (the same request without
# auth, with another method) need the app on the schema, so the app is built at import, on a temp dir that the
# module's teardown removes. (schemathesis.pytest.from_fixture does not run under this pytest.)
DATA_DIR = Path(tempfile.mkdtemp(prefix="robotrain-schemathesis-")) / "data"
# Limits high enough that generated submissions are accepted (202) rather than all refused with 429.
APP_SETTINGS = Settings(
    data_dir=DATA_DIR,
    internal_token=INTERNAL_TOKEN,
    submit_rate_per_minute=1_000_000,
    max_active_jobs_per_user=1_000_000,
)
APP = api_app(build_components(APP_SETTINGS))
# The webhook routes resolve the endpoint's host name at registration (a DNS lookup), and tests send nothing beyond
# 127.0.0.1, so generated URLs are not registered here; tests/robotrain/api/test_webhooks.py covers those routes.
schema = from_asgi("/openapi.json", APP).exclude(path_regex=r"^/webhooks")


@pytest.fixture(scope="module", autouse=True)
def remove_data_dir() -> Iterator[None]:
    yield
    shutil.rmtree(DATA_DIR.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def user_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {LocalKeys(DATA_DIR).mint('user_fuzz')}"}


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_no_server_errors_and_responses_match_the_schema(case: schemathesis.Case, user_headers: dict[str, str]) -> None:
    token = {"Authorization": f"Bearer {INTERNAL_TOKEN}"} if case.path == INTERNAL_ROUTE else user_headers
    excluded = list(EXCLUDED_EVERYWHERE)
    if (case.method, case.path) in RULES_THE_SCHEMA_CANNOT_STATE:
        excluded.append(checks.positive_data_acceptance)
    if (case.method, case.path) in LAX_PARSING:
        excluded.append(checks.negative_data_rejection)
    case.call_and_validate(headers=token, excluded_checks=excluded)


@given(uri=from_regex(DATASET_URI_PATTERN, fullmatch=True))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_every_dataset_uri_the_schema_allows_passes_the_validator(uri: str) -> None:
    """The schema's pattern promises no more than the validator accepts (so clients that follow it are never 422)."""
    if re.fullmatch(DATASET_URI_PATTERN, uri) and "\n" not in uri:  # JSON-schema regexes have no multiline `$`
        DatasetSpec(uri=uri)
