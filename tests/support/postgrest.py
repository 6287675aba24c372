"""A strict PostgREST-subset server over real PostgreSQL, so the real supabase-py client runs unchanged in tests.

It speaks the wire format that postgrest-py 2.34 sends (reference/services.md §2.2/§2.3) and nothing more: anything
it does not implement is answered with 400 and code PGRST100, so application code cannot start to depend on an
untested PostgREST feature without this emulator growing (and being tested) to match.

Implemented:
- GET/HEAD/POST/PATCH/DELETE /rest/v1/<table>; POST and GET /rest/v1/rpc/<function> with named arguments.
- Filters `col=op.value` with eq, neq, gt, gte, lt, lte, in.(a,"b,c"), is.null|true|false|unknown; several on the
  same column are ANDed. Values are bound parameters cast to the column's type.
- select=* or a column list; order=col[.asc|.desc][.nullsfirst|.nullslast],...; limit; offset; columns= (POST);
  on_conflict= (POST upsert).
- Prefer: return=representation|minimal, count=exact, resolution=merge-duplicates|ignore-duplicates,
  missing=default. Accept: application/json, */*, application/vnd.pgrst.object+json (406 PGRST116 unless exactly one
  row; a write is rolled back then). Accept-Profile/Content-Profile must be `public`.
- Content-Range on every table response; 201 for POST, 204 for PATCH/DELETE without representation, 206 for a
  counted partial range, 416 (PGRST103) for an offset past the counted end.
- Errors: {"code","message","details","hint"} from PostgreSQL's SQLSTATE and diagnostics, mapped to HTTP statuses
  the way PostgREST's docs/references/errors.rst does (23505/23503 → 409, 42501 → 401 as anon / 403 otherwise,
  42P01/42883 → 404, 08*/53* → 503, 25006 → 405, P0001 → 400, PTxyz → xyz, classes 09/25/2D/38/39/3B/40/55/57/
  58/F0/HV/P0/XX → 500, anything else → 400). A database that cannot be reached → 503 PGRST001.
- Auth as Supabase's PostgREST: the bearer token (Authorization, else the apikey header) must be an HS256 JWT signed
  with the project's JWT secret (401 PGRST301 otherwise, PGRST303 when expired); no token means the anon role. The
  `role` claim selects the database role with `set_config('role', ..., true)` and all claims go to
  `request.jwt.claims`, so `auth.jwt()` and RLS behave as on Supabase. Each request is one transaction, read only
  for GET/HEAD. The server logs in as `authenticator`, which can switch only to anon, authenticated, service_role.
- Table, column and function names are checked against the catalog (loaded at start; `reload_schema()` after DDL,
  as PostgREST's schema cache needs NOTIFY pgrst) and quoted as identifiers; values are always parameters.
- `observers` (callables of method and path) see every request as it arrives: tests count round trips with them.

The API gateway in front of PostgREST (Supabase's Kong): tests can make the server answer as it does, before
PostgREST sees the request. With `gateway_keys` set, a request whose `apikey` header is not one of the project's keys
gets the gateway's 401 `{"message": "Invalid API key", "hint": ...}` (JSON without a PostgREST `code`); each
`GatewayFault` in `gateway_faults` answers one request with its status, content type and body (a 502 HTML page, a
503 or 504 JSON message without a code), in order.

Known deviations from real PostgREST (v12):
- Not implemented (→ 400 PGRST100): embedding/relations, `or=`/`and=`/`not.` and every other operator (like, ilike,
  cs, cd, fts, ...), aliases/casts/JSON paths in select, limit/order on PATCH/DELETE, PUT, CSV and other media types,
  Prefer count=planned|estimated, return=headers-only, tx=, handling=, max-affected, Range headers, query parameters
  on POST /rpc, set-returning functions of scalars, schemas other than `public`.
- Error messages are PostgreSQL's own text; PostgREST's own errors reuse its codes but not always its exact wording.
- No Location header after an insert; no max-rows cap (Supabase caps each response at 1000 rows by default);
  a role claim other than anon/authenticated/service_role is refused with 401 PGRST301 (PostgREST would fail on
  `set role` with 22023 / 42704); a void function answers 204 with an empty body.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

import jwt
import psycopg
import uvicorn
from psycopg import sql
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SCHEMA = "public"
API_ROLES = frozenset({"anon", "authenticated", "service_role"})
ANON_ROLE = "anon"
SINGULAR_MEDIA_TYPE = "application/vnd.pgrst.object+json"
FILTER_OPERATORS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
IS_VALUES = {"null": "null", "true": "true", "false": "false", "unknown": "unknown"}
TABLE_PARAMS = frozenset({"select", "order", "limit", "offset", "columns", "on_conflict"})
_COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class PostgrestError(Exception):
    def __init__(self, status: int, code: str, message: str, details: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details, self.hint = status, code, message, details, hint

    def response(self) -> Response:
        body = {"code": self.code, "details": self.details, "hint": self.hint, "message": self.message}
        return Response(json.dumps(body), status_code=self.status, media_type="application/json")


def unsupported(what: str) -> PostgrestError:
    return PostgrestError(400, "PGRST100", f"not supported by the PostgREST-subset test server: {what}")


def _sqlstate_status(sqlstate: str, role: str) -> int:
    if sqlstate == "42501":
        return 401 if role == ANON_ROLE else 403
    if sqlstate in ("23505", "23503"):
        return 409
    if sqlstate in ("42P01", "42883"):
        return 404
    if sqlstate == "25006":
        return 405
    if sqlstate == "P0001":
        return 400
    if sqlstate.startswith("PT") and sqlstate[2:].isdigit():
        return int(sqlstate[2:])
    if sqlstate[:2] in ("08", "53"):
        return 503
    if sqlstate[:2] in ("09", "25", "2D", "38", "39", "3B", "40", "55", "57", "58", "F0", "HV", "P0", "XX"):
        return 500
    return 400


def database_error(error: psycopg.Error, role: str) -> PostgrestError:
    sqlstate = error.sqlstate
    if sqlstate is None:  # no server answer: the connection could not be made or was lost
        return PostgrestError(503, "PGRST001", "Database client error. Retrying the connection.", str(error))
    diag = error.diag
    return PostgrestError(
        _sqlstate_status(sqlstate, role),
        sqlstate,
        diag.message_primary or str(error),
        diag.message_detail,
        diag.message_hint,
    )


# --- the catalog ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    name: str
    columns: dict[str, str]  # name -> format_type(), in attnum order
    primary_key: tuple[str, ...]


@dataclass(frozen=True)
class Function:
    name: str
    arguments: dict[str, str]  # input argument name -> type
    required: frozenset[str]
    returns_set: bool
    return_type: str
    returns_composite: bool


@dataclass
class Catalog:
    tables: dict[str, Table] = field(default_factory=dict)
    functions: dict[str, list[Function]] = field(default_factory=dict)

    @classmethod
    def load(cls, conn: psycopg.Connection) -> Catalog:
        columns: dict[str, dict[str, str]] = {}
        for table, column, type_name in conn.execute(
            """select c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
               join pg_attribute a on a.attrelid = c.oid
               where n.nspname = %s and c.relkind in ('r', 'v', 'p', 'm', 'f') and a.attnum > 0
                 and not a.attisdropped
               order by c.relname, a.attnum""",
            (SCHEMA,),
        ):
            columns.setdefault(table, {})[column] = type_name
        keys: dict[str, list[str]] = {}
        for table, column in conn.execute(
            """select c.relname, a.attname
               from pg_index i join pg_class c on c.oid = i.indrelid
               join pg_namespace n on n.oid = c.relnamespace
               join lateral unnest(i.indkey) with ordinality as k(attnum, position) on true
               join pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum
               where n.nspname = %s and i.indisprimary
               order by c.relname, k.position""",
            (SCHEMA,),
        ):
            keys.setdefault(table, []).append(column)
        tables = {name: Table(name, cols, tuple(keys.get(name, ()))) for name, cols in columns.items()}

        functions: dict[str, list[Function]] = {}
        for name, arg_names, arg_modes, arg_types, n_defaults, returns_set, return_type, type_kind in conn.execute(
            """select p.proname, p.proargnames, p.proargmodes::text[],
                      array(select format_type(t, null) from unnest(p.proargtypes) as t),
                      p.pronargdefaults, p.proretset, format_type(p.prorettype, null), t.typtype
               from pg_proc p join pg_namespace n on n.oid = p.pronamespace
               join pg_type t on t.oid = p.prorettype
               where n.nspname = %s and p.prokind = 'f'""",
            (SCHEMA,),
        ):
            all_names = arg_names or []
            if arg_modes is None:
                input_names = all_names[: len(arg_types)]
            else:
                input_names = [n for n, mode in zip(all_names, arg_modes, strict=False) if mode in ("i", "b", "v")]
            if len(input_names) != len(arg_types) or not all(input_names):
                continue  # unnamed arguments cannot be called with named JSON arguments
            arguments = dict(zip(input_names, arg_types, strict=True))
            required = frozenset(input_names[: len(input_names) - n_defaults])
            functions.setdefault(name, []).append(
                Function(
                    name, arguments, required, returns_set, return_type, type_kind == "c" or return_type == "record"
                )
            )
        return cls(tables, functions)

    def table(self, name: str) -> Table:
        table = self.tables.get(name)
        if table is None:
            raise PostgrestError(
                404, "PGRST205", f"Could not find the table '{SCHEMA}.{name}' in the schema cache", None, None
            )
        return table

    def function(self, name: str, given: set[str]) -> Function:
        for candidate in self.functions.get(name, []):
            if given <= set(candidate.arguments) and candidate.required <= given:
                return candidate
        signature = ", ".join(sorted(given))
        raise PostgrestError(
            404, "PGRST202", f"Could not find the function {SCHEMA}.{name}({signature}) in the schema cache"
        )


def _column(table: Table, name: str) -> str:
    if name not in table.columns:
        raise PostgrestError(400, "42703", f"column {table.name}.{name} does not exist")
    return name


# --- parsing the request ----------------------------------------------------------------------------------------


@dataclass
class Prefer:
    representation: bool = False
    count: bool = False
    resolution: str | None = None
    missing_default: bool = False


def parse_prefer(values: list[str]) -> Prefer:
    prefer = Prefer()
    for raw in ",".join(values).split(","):
        token = raw.strip()
        if not token:
            continue
        key, _, value = token.partition("=")
        if token == "return=representation":
            prefer.representation = True
        elif token == "return=minimal":
            prefer.representation = False
        elif token == "count=exact":
            prefer.count = True
        elif key == "resolution" and value in ("merge-duplicates", "ignore-duplicates"):
            prefer.resolution = value
        elif token == "missing=default":
            prefer.missing_default = True
        elif token == "missing=null":
            prefer.missing_default = False
        else:
            raise unsupported(f"Prefer: {token}")
    return prefer


def split_outside_quotes(text: str) -> list[str]:
    """Split on commas that are not inside double quotes; unquote quoted items (backslash escapes)."""
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = was_quoted = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted, was_quoted = not quoted, True
        elif char == "," and not quoted:
            items.append("".join(current) if was_quoted else "".join(current).strip())
            current, was_quoted = [], False
        else:
            current.append(char)
    if quoted or escaped:
        raise PostgrestError(400, "PGRST100", f'"failed to parse" unbalanced quotes in {text!r}')
    items.append("".join(current) if was_quoted else "".join(current).strip())
    return items


@dataclass
class Query:
    filters: list[tuple[str, str, str]] = field(default_factory=list)  # (column, operator, raw value)
    select: list[str] | None = None  # None = *
    order: list[tuple[str, bool, bool | None]] = field(default_factory=list)  # (column, desc, nulls first)
    limit: int | None = None
    offset: int = 0
    columns: list[str] | None = None
    on_conflict: list[str] | None = None
    has_select: bool = False


def _non_negative(name: str, raw: str) -> int:
    if not raw.isdigit():
        raise PostgrestError(400, "PGRST100", f'"failed to parse" {name}={raw!r}: not a non-negative integer')
    return int(raw)


def parse_query(table: Table, params: list[tuple[str, str]]) -> Query:
    query = Query()
    seen: set[str] = set()
    for key, value in params:
        if key in TABLE_PARAMS:
            if key in seen:
                raise unsupported(f"repeated query parameter {key!r}")
            seen.add(key)
        if key == "select":
            query.has_select = True
            items = [item.strip() for item in value.split(",")]
            if items == ["*"]:
                continue
            for item in items:
                if item == "*" or not _COLUMN_NAME.match(item):
                    raise unsupported(f"select item {item!r} (only plain column names or a lone *)")
                _column(table, item)
            query.select = items
        elif key == "order":
            for item in value.split(","):
                parts = item.strip().split(".")
                column, modifiers = parts[0], parts[1:]
                _column(table, column)
                desc, nulls_first = False, None
                for modifier in modifiers:
                    if modifier in ("asc", "desc"):
                        desc = modifier == "desc"
                    elif modifier in ("nullsfirst", "nullslast"):
                        nulls_first = modifier == "nullsfirst"
                    else:
                        raise unsupported(f"order modifier {modifier!r}")
                query.order.append((column, desc, nulls_first))
        elif key == "limit":
            query.limit = _non_negative(key, value)
        elif key == "offset":
            query.offset = _non_negative(key, value)
        elif key == "columns":
            query.columns = [_column(table, name) for name in split_outside_quotes(value)]
        elif key == "on_conflict":
            query.on_conflict = [_column(table, name) for name in split_outside_quotes(value)]
        else:
            column = key[1:-1] if len(key) > 1 and key.startswith('"') and key.endswith('"') else key
            if not _COLUMN_NAME.match(column):
                raise unsupported(f"query parameter {key!r} (logic trees, embedding and JSON paths)")
            operator, dot, operand = value.partition(".")
            if not dot or (operator not in FILTER_OPERATORS and operator not in ("in", "is")):
                raise unsupported(f"filter {key}={value}")
            query.filters.append((_column(table, column), operator, operand))
    return query


def filter_sql(table: Table, filters: list[tuple[str, str, str]]) -> tuple[sql.Composable, list[Any]]:
    clauses: list[sql.Composable] = []
    params: list[Any] = []
    for column, operator, operand in filters:
        ident = sql.Identifier(column)
        # the type string comes from format_type() in the catalog, not from the request
        cast = sql.SQL(table.columns[column])
        if operator in FILTER_OPERATORS:
            clauses.append(sql.SQL("{} {} cast(%s as {})").format(ident, sql.SQL(FILTER_OPERATORS[operator]), cast))
            params.append(operand)
        elif operator == "in":
            if not (operand.startswith("(") and operand.endswith(")")):
                raise PostgrestError(400, "PGRST100", f'"failed to parse filter" {column}=in.{operand}')
            inner = operand[1:-1]
            values = split_outside_quotes(inner) if inner else []
            if not values:
                clauses.append(sql.SQL("false"))
                continue
            placeholders = sql.SQL(", ").join(sql.SQL("cast(%s as {})").format(cast) for _ in values)
            clauses.append(sql.SQL("{} in ({})").format(ident, placeholders))
            params.extend(values)
        else:  # is
            if operand not in IS_VALUES:
                raise PostgrestError(400, "PGRST100", f'"failed to parse filter" {column}=is.{operand}')
            clauses.append(sql.SQL("{} is {}").format(ident, sql.SQL(IS_VALUES[operand])))
    where = sql.SQL(" where ") + sql.SQL(" and ").join(clauses) if clauses else sql.SQL("")
    return where, params


def select_list(table: Table, query: Query) -> sql.Composable:
    columns = query.select if query.select is not None else list(table.columns)
    return sql.SQL(", ").join(sql.Identifier(column) for column in columns)


def order_sql(query: Query) -> sql.Composable:
    if not query.order:
        return sql.SQL("")
    items = []
    for column, desc, nulls_first in query.order:
        item = sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL("desc" if desc else "asc"))
        if nulls_first is not None:
            item = item + sql.SQL(" nulls first" if nulls_first else " nulls last")
        items.append(item)
    return sql.SQL(" order by ") + sql.SQL(", ").join(items)


def table_ident(table: Table) -> sql.Composable:
    return sql.Identifier(SCHEMA, table.name)


# --- the server -----------------------------------------------------------------------------------------------


@dataclass
class Result:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _content_range(offset: int, returned: int, total: int | None) -> str:
    total_text = "*" if total is None else str(total)
    if returned == 0:
        return f"*/{total_text}"
    return f"{offset}-{offset + returned - 1}/{total_text}"


@dataclass(frozen=True)
class GatewayFault:
    """One answer of the API gateway in place of PostgREST's (an upstream outage, a timeout, a proxy's error page)."""

    status: int
    body: str
    content_type: str = "application/json"


# What Supabase's gateway answers for an `apikey` that is not one of the project's keys (seen in supabase-csharp#108,
# nuxt-modules/supabase#195): a 401 whose JSON has no PostgREST `code`.
INVALID_API_KEY_BODY = json.dumps(
    {"message": "Invalid API key", "hint": "Double check your Supabase `anon` or `service_role` API key."}
)
# A proxy's 502 page (HTML, so postgrest-py falls back to the HTTP status as the code) and Kong's own 5xx answers.
BAD_GATEWAY_HTML = GatewayFault(
    502,
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>",
    "text/html",
)
UPSTREAM_INVALID_JSON = GatewayFault(
    502, json.dumps({"message": "An invalid response was received from the upstream server"})
)
UPSTREAM_TIMEOUT_JSON = GatewayFault(504, json.dumps({"message": "The upstream server is timing out"}))


class PostgrestSubset:
    """The ASGI app (`.app`) and its database access. `conninfo` must log in as `authenticator`."""

    def __init__(self, conninfo: str, jwt_secret: str, *, max_idle_connections: int = 8):
        # The gateway in front (module doc): None lets every apikey through, as the tests' own stack does.
        self.gateway_keys: frozenset[str] | None = None
        self.gateway_faults: list[GatewayFault] = []
        self.conninfo = conninfo
        self.jwt_secret = jwt_secret
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._max_idle = max_idle_connections
        self.observers: list[Callable[[str, str], None]] = []
        self.catalog: Catalog | None = None
        with suppress(psycopg.OperationalError):  # an unreachable database is answered per request with 503
            self.reload_schema()
        self.app = Starlette(
            routes=[
                Route(
                    "/rest/v1/{path:path}",
                    self._endpoint,
                    methods=["GET", "HEAD", "POST", "PATCH", "DELETE", "PUT", "OPTIONS"],
                )
            ]
        )

    # connections: a small pool of idle autocommit connections; each request runs BEGIN ... COMMIT itself
    def _checkout(self) -> psycopg.Connection:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed and not conn.broken:
                    return conn
        return psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)

    def _checkin(self, conn: psycopg.Connection) -> None:
        if conn.closed or conn.broken:
            return
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.close()
            return
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def reload_schema(self) -> None:
        conn = self._checkout()
        try:
            self.catalog = Catalog.load(conn)
        finally:
            self._checkin(conn)

    def _gateway_answer(self, headers: Any) -> Response | None:
        """What the gateway answers instead of PostgREST, if anything (module doc)."""
        try:
            fault = self.gateway_faults.pop(0)
        except IndexError:
            fault = None
        if fault is not None:
            return Response(fault.body, status_code=fault.status, media_type=fault.content_type)
        if self.gateway_keys is not None and headers.get("apikey") not in self.gateway_keys:
            return Response(INVALID_API_KEY_BODY, status_code=401, media_type="application/json")
        return None

    async def _endpoint(self, request: Request) -> Response:
        for observe in list(self.observers):
            observe(request.method, request.path_params["path"])
        gateway = self._gateway_answer(request.headers)
        if gateway is not None:
            return gateway
        body = await request.body()
        try:
            result = await run_in_threadpool(
                self.handle,
                request.method,
                request.path_params["path"],
                request.scope["query_string"].decode("latin-1"),
                request.headers,
                body,
            )
        except PostgrestError as error:
            return error.response()
        return Response(result.body, status_code=result.status, headers=result.headers)

    # --- one request ----------------------------------------------------------------------------------------

    def _claims(self, headers: Any) -> dict[str, Any]:
        authorization = headers.get("authorization")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise PostgrestError(401, "PGRST301", "Authorization header is not a Bearer token")
        else:
            token = headers.get("apikey", "")
        if not token:
            return {"role": ANON_ROLE}
        try:
            claims = jwt.decode(token, self.jwt_secret, algorithms=["HS256"], options={"verify_aud": False})
        except jwt.ExpiredSignatureError:
            raise PostgrestError(401, "PGRST303", "JWT expired") from None
        except jwt.InvalidTokenError as error:
            raise PostgrestError(401, "PGRST301", f"JWT invalid: {error}") from None
        role = claims.get("role", ANON_ROLE)
        if role not in API_ROLES:
            raise PostgrestError(401, "PGRST301", f"JWT role {role!r} is not one this server can switch to")
        return claims

    def handle(self, method: str, path: str, query_string: str, headers: Any, body: bytes) -> Result:
        if method not in ("GET", "HEAD", "POST", "PATCH", "DELETE"):
            raise unsupported(f"method {method}")
        profile = headers.get("accept-profile" if method in ("GET", "HEAD") else "content-profile")
        if profile not in (None, SCHEMA):
            raise PostgrestError(406, "PGRST106", f"The schema must be one of the following: {SCHEMA}")
        singular = self._singular(headers.get("accept"))
        prefer = parse_prefer(headers.getlist("prefer") if hasattr(headers, "getlist") else [])
        claims = self._claims(headers)
        # PostgREST decodes the query string as a form would ('+' is a space)
        params = parse_qsl(query_string, keep_blank_values=True)
        payload = self._payload(method, headers, body)

        if self.catalog is None:  # the database was unreachable so far (PostgREST retries its schema cache too)
            try:
                self.reload_schema()
            except psycopg.OperationalError as error:
                raise database_error(error, claims["role"]) from None
        parts = path.split("/")
        if len(parts) == 2 and parts[0] == "rpc":
            work = self._rpc_plan(method, unquote(parts[1]), params, payload, prefer)
        elif len(parts) == 1 and parts[0]:
            work = self._table_plan(method, self.catalog.table(parts[0]), params, payload, prefer, singular)
        else:
            raise PostgrestError(404, "PGRST125", f"Invalid path specified in request URL: /rest/v1/{path}")
        return self._run(method, claims, path, work, singular)

    @staticmethod
    def _singular(accept: str | None) -> bool:
        if not accept:
            return False
        media_types = [item.split(";")[0].strip().lower() for item in accept.split(",")]
        if SINGULAR_MEDIA_TYPE in media_types:
            return True
        if any(media in ("application/json", "*/*", "application/*") for media in media_types):
            return False
        raise PostgrestError(406, "PGRST107", f"None of these media types are available: {accept}")

    @staticmethod
    def _payload(method: str, headers: Any, body: bytes) -> Any:
        if method in ("GET", "HEAD") or (method == "DELETE" and body.strip() in (b"", b"{}")):
            return None
        if not body.strip():
            return {} if method == "POST" else None
        content_type = (headers.get("content-type") or "application/json").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise unsupported(f"Content-Type {content_type}")
        try:
            return json.loads(body)
        except ValueError as error:
            raise PostgrestError(400, "PGRST102", f"Empty or invalid json: {error}") from None

    def _run(self, method: str, claims: dict[str, Any], path: str, work: Any, singular: bool) -> Result:
        role = claims["role"]
        try:
            conn = self._checkout()
        except psycopg.OperationalError as error:
            raise database_error(error, role) from None
        try:
            conn.execute("begin read only" if method in ("GET", "HEAD") else "begin")
            conn.execute(
                "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true), "
                "set_config('request.method', %s, true), set_config('request.path', %s, true)",
                (role, json.dumps(claims), method, "/" + path),
            )
            result = work(conn)
            if singular and getattr(result, "rows", 1) != 1:
                conn.execute("rollback")
                raise PostgrestError(
                    406,
                    "PGRST116",
                    "JSON object requested, multiple (or no) rows returned",
                    f"The result contains {result.rows} rows",
                )
            conn.execute("commit")
            return result.finish(singular)
        except psycopg.Error as error:
            if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                with suppress(psycopg.Error):
                    conn.execute("rollback")
            raise database_error(error, role) from None
        finally:
            if conn.info.transaction_status not in (
                psycopg.pq.TransactionStatus.IDLE,
                psycopg.pq.TransactionStatus.UNKNOWN,
            ):
                with suppress(psycopg.Error):
                    conn.execute("rollback")
            self._checkin(conn)

    # --- tables ---------------------------------------------------------------------------------------------

    def _table_plan(
        self, method: str, table: Table, params: list[tuple[str, str]], payload: Any, prefer: Prefer, singular: bool
    ):
        query = parse_query(table, params)
        if method in ("GET", "HEAD"):
            if query.columns is not None or query.on_conflict is not None:
                raise unsupported("columns/on_conflict on a read")
            if prefer.resolution or prefer.missing_default:
                raise unsupported("resolution/missing preferences on a read")
            return lambda conn: self._read(conn, method, table, query, prefer)
        if query.limit is not None or query.offset or query.order:
            raise unsupported("limit/offset/order on a write")
        if method == "POST":
            return lambda conn: self._insert(conn, table, query, payload, prefer)
        if query.columns is not None or query.on_conflict is not None or prefer.resolution:
            raise unsupported("columns/on_conflict/resolution outside POST")
        if method == "PATCH":
            if not isinstance(payload, dict):
                raise PostgrestError(400, "PGRST102", "PATCH needs a JSON object")
            return lambda conn: self._update(conn, table, query, payload, prefer)
        return lambda conn: self._delete(conn, table, query, prefer)

    def _read(self, conn: psycopg.Connection, method: str, table: Table, query: Query, prefer: Prefer) -> _Rows:
        where, params = filter_sql(table, query.filters)
        statement = sql.SQL("select {} from {}{}{}").format(
            select_list(table, query), table_ident(table), where, order_sql(query)
        )
        page_params = list(params)
        if query.limit is not None:
            statement += sql.SQL(" limit %s")
            page_params.append(query.limit)
        if query.offset:
            statement += sql.SQL(" offset %s")
            page_params.append(query.offset)
        body, count = conn.execute(
            sql.SQL("select coalesce(json_agg(_row), '[]')::text, count(*) from ({}) as _row").format(statement),
            page_params,
        ).fetchone()
        total = None
        if prefer.count:
            total = conn.execute(
                sql.SQL("select count(*) from {}{}").format(table_ident(table), where), params
            ).fetchone()[0]
            if query.offset and query.offset >= total > 0:
                raise PostgrestError(
                    416,
                    "PGRST103",
                    "Requested range not satisfiable",
                    f"An offset of {query.offset} was requested, but there are only {total} rows.",
                )
        status = 206 if total is not None and count < total else 200
        return _Rows(status, body, count, _content_range(query.offset, count, total), head=method == "HEAD")

    def _insert(self, conn: psycopg.Connection, table: Table, query: Query, payload: Any, prefer: Prefer) -> _Rows:
        rows = payload if isinstance(payload, list) else [payload]
        if not all(isinstance(row, dict) for row in rows):
            raise PostgrestError(400, "PGRST102", "The payload must be a JSON object or an array of objects")
        if query.columns is not None:
            columns = query.columns
        elif rows:
            columns = list(rows[0])
            for column in columns:
                if column not in table.columns:
                    raise PostgrestError(
                        400, "PGRST204", f"Could not find the '{column}' column of '{table.name}' in the schema cache"
                    )
            if any(set(row) != set(columns) for row in rows):
                raise PostgrestError(400, "PGRST102", "All object keys must match")
        else:
            columns = []
        if not rows:
            return _Rows(
                201, "[]", 0, _content_range(0, 0, 0 if prefer.count else None), representation=prefer.representation
            )
        target = table_ident(table)
        column_list = sql.SQL(", ").join(sql.Identifier(column) for column in columns)
        params: list[Any] = []
        if prefer.missing_default and any(set(columns) - set(row) for row in rows):
            values = []
            for row in rows:
                cells = []
                for column in columns:
                    if column in row:
                        cells.append(
                            sql.SQL("(jsonb_populate_record(null::{}, %s::jsonb)).{}").format(
                                target, sql.Identifier(column)
                            )
                        )
                        params.append(json.dumps({column: row[column]}))
                    else:
                        cells.append(sql.SQL("default"))
                values.append(sql.SQL("({})").format(sql.SQL(", ").join(cells)))
            source = sql.SQL("values {}").format(sql.SQL(", ").join(values))
        else:
            source = sql.SQL("select {} from jsonb_populate_recordset(null::{}, %s::jsonb)").format(column_list, target)
            params.append(json.dumps(rows))
        statement = sql.SQL("insert into {} ({}) {}").format(target, column_list, source)
        if prefer.resolution:
            conflict = query.on_conflict or list(table.primary_key)
            if not conflict:
                raise unsupported("an upsert on a table without a primary key and without on_conflict")
            conflict_sql = sql.SQL(", ").join(sql.Identifier(column) for column in conflict)
            updates = [column for column in columns if column not in conflict]
            if prefer.resolution == "ignore-duplicates" or not updates:
                statement += sql.SQL(" on conflict ({}) do nothing").format(conflict_sql)
            else:
                statement += sql.SQL(" on conflict ({}) do update set {}").format(
                    conflict_sql,
                    sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in updates),
                )
        return self._write(conn, table, query, prefer, statement, params, 201, star_range=True)

    def _update(self, conn: psycopg.Connection, table: Table, query: Query, payload: dict, prefer: Prefer) -> _Rows:
        for column in payload:
            if column not in table.columns:
                raise PostgrestError(
                    400, "PGRST204", f"Could not find the '{column}' column of '{table.name}' in the schema cache"
                )
        if not payload:
            return _Rows(200 if prefer.representation else 204, "[]", 0, "*/*", representation=prefer.representation)
        where, params = filter_sql(table, query.filters)
        target = table_ident(table)
        assignments = sql.SQL(", ").join(
            sql.SQL("{0} = (jsonb_populate_record(null::{1}, %s::jsonb)).{0}").format(sql.Identifier(column), target)
            for column in payload
        )
        statement = sql.SQL("update {} set {}{}").format(target, assignments, where)
        values = [json.dumps(payload)] * len(payload) + params
        return self._write(conn, table, query, prefer, statement, values, 200)

    def _delete(self, conn: psycopg.Connection, table: Table, query: Query, prefer: Prefer) -> _Rows:
        where, params = filter_sql(table, query.filters)
        statement = sql.SQL("delete from {}{}").format(table_ident(table), where)
        return self._write(conn, table, query, prefer, statement, params, 200)

    def _write(
        self,
        conn: psycopg.Connection,
        table: Table,
        query: Query,
        prefer: Prefer,
        statement: sql.Composable,
        params: Any,
        status: int,
        *,
        star_range: bool = False,
    ) -> _Rows:
        if prefer.representation:
            returning = sql.SQL(" returning {}").format(select_list(table, query))
        else:
            returning = sql.SQL(" returning 1")
        body, count = conn.execute(
            sql.SQL(
                "with _written as ({}{}) select coalesce(json_agg(_written), '[]')::text, count(*) from _written"
            ).format(statement, returning),
            params,
        ).fetchone()
        total = count if prefer.count else None
        if star_range or count == 0:
            content_range = f"*/{'*' if total is None else total}"
        else:
            content_range = _content_range(0, count, total)
        if not prefer.representation and status == 200:
            status = 204
        return _Rows(status, body, count, content_range, representation=prefer.representation)

    # --- functions ------------------------------------------------------------------------------------------

    def _rpc_plan(self, method: str, name: str, params: list[tuple[str, str]], payload: Any, prefer: Prefer):
        if method not in ("GET", "POST", "HEAD"):
            raise unsupported(f"{method} on a function")
        if prefer.resolution or prefer.missing_default:
            raise unsupported("resolution/missing preferences on a function")
        if method == "POST":
            if params:
                raise unsupported("query parameters on POST /rpc (filtering function results)")
            if not isinstance(payload, dict):
                raise PostgrestError(400, "PGRST102", "The function arguments must be a JSON object")
            arguments = payload
        else:
            arguments = {}
            for key, value in params:
                if key in arguments:
                    raise unsupported(f"repeated argument {key!r}")
                arguments[key] = value
        function = self.catalog.function(name, set(arguments))
        if function.returns_set and not function.returns_composite:
            raise unsupported("set-returning functions of scalars")
        return lambda conn: self._call(conn, function, arguments, method == "POST", prefer)

    @staticmethod
    def _call(
        conn: psycopg.Connection, function: Function, arguments: dict[str, Any], from_json: bool, prefer: Prefer
    ) -> _Rows:
        args_sql = []
        values = []
        for name, value in arguments.items():
            args_sql.append(
                sql.SQL("{} => cast(%s as {})").format(sql.Identifier(name), sql.SQL(function.arguments[name]))
            )
            if from_json and (isinstance(value, dict | list) or function.arguments[name] in ("json", "jsonb")):
                values.append(json.dumps(value))
            elif from_json and isinstance(value, bool):
                values.append("true" if value else "false")
            else:
                values.append(None if value is None else str(value))
        call = sql.SQL("{}({})").format(sql.Identifier(SCHEMA, function.name), sql.SQL(", ").join(args_sql))
        if function.returns_set:
            body, count = conn.execute(
                sql.SQL("select coalesce(json_agg(_row), '[]')::text, count(*) from {} as _row").format(call), values
            ).fetchone()
            return _Rows(200, body, count, _content_range(0, count, count if prefer.count else None))
        if function.return_type == "void":
            conn.execute(sql.SQL("select {}").format(call), values)
            return _Rows(204, "", 1, None, representation=False)
        if function.returns_composite:
            body = conn.execute(sql.SQL("select to_json(_row)::text from {} as _row").format(call), values).fetchone()[
                0
            ]
        else:
            body = conn.execute(sql.SQL("select to_json({})::text").format(call), values).fetchone()[0]
        if body is None:  # a scalar function that returned NULL: PostgREST answers 200 with the JSON `null`
            body = "null"
        return _Rows(200, body, 1, None, scalar=True)


@dataclass
class _Rows:
    status: int
    body: str
    rows: int
    content_range: str | None
    representation: bool = True
    head: bool = False
    scalar: bool = False

    def finish(self, singular: bool) -> Result:
        headers = {}
        if self.content_range is not None:
            headers["Content-Range"] = self.content_range
        if not self.representation:
            return Result(self.status, b"", headers)
        body = self.body
        if singular and not self.scalar:
            body = json.dumps(json.loads(body)[0])
        headers["Content-Type"] = (SINGULAR_MEDIA_TYPE if singular else "application/json") + "; charset=utf-8"
        return Result(self.status, b"" if self.head else body.encode(), headers)


# --- running it --------------------------------------------------------------------------------------------------


def mint_jwt(secret: str, role: str, *, sub: str | None = None, ttl_s: float = 3600, **claims: Any) -> str:
    """A Supabase-style HS256 key or session token (the service_role key is `mint_jwt(secret, "service_role")`)."""
    now = int(time.time())
    payload: dict[str, Any] = {"iss": "supabase", "role": role, "iat": now, "exp": now + int(ttl_s), **claims}
    if sub is not None:
        payload["sub"] = sub
    return jwt.encode(payload, secret, algorithm="HS256")


@dataclass(frozen=True)
class RunningServer:
    url: str  # what SUPABASE_URL would be: http://127.0.0.1:<port>
    subset: PostgrestSubset


@contextmanager
def serve(subset: PostgrestSubset) -> Iterator[RunningServer]:
    """Serve the app with uvicorn in a thread on a loopback port bound here (no free-port race); stop it after."""
    # proto IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on accepted sockets whose proto says TCP,
    # and without it every response (headers, then body) waits ~40 ms on the client's delayed ACK
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(subset.app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="postgrest-subset", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the PostgREST-subset server did not start")
            time.sleep(0.01)
        yield RunningServer(f"http://127.0.0.1:{port}", subset)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        subset.close()
