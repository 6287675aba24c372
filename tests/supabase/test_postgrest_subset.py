"""The PostgREST-subset test server: one test per supported feature of the wire format (reference/services.md §2.2,
§2.3), through raw HTTP where the exact status and headers matter and through the real supabase-py client where
the client's parsing matters; and 400 PGRST100 for everything it does not implement."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from postgrest import APIError
from supabase import Client, ClientOptions, create_client

from tests.support import postgrest
from tests.support.supabase_env import JWT_SECRET, SupabaseStack

REST = "/rest/v1"


def job_row(job_id: str, user_id: str = "user_a", **extra) -> dict:
    return {"id": job_id, "user_id": user_id, "name": f"name-{job_id}", "status": "queued", "spec": {"n": 1}} | extra


@pytest.fixture
def stack(supabase: SupabaseStack) -> SupabaseStack:
    return supabase


@pytest.fixture
def api(stack: SupabaseStack) -> Iterator[httpx.Client]:
    """Raw HTTP with the service_role key, as supabase-py sends it."""
    headers = {"apikey": stack.service_key, "Authorization": f"Bearer {stack.service_key}"}
    with httpx.Client(base_url=stack.url + REST, headers=headers, timeout=5) as client:
        yield client


@pytest.fixture
def client(stack: SupabaseStack) -> Iterator[Client]:
    http = httpx.Client(timeout=5)
    yield create_client(
        stack.url,
        stack.service_key,
        options=ClientOptions(
            httpx_client=http, postgrest_client_retry=False, auto_refresh_token=False, persist_session=False
        ),
    )
    http.close()


@pytest.fixture
def jobs(api: httpx.Client) -> list[dict]:
    rows = [
        job_row("j1", created_at="2026-01-01T00:00:01Z", attempt=0, retry_of=None),
        job_row("j2", created_at="2026-01-01T00:00:02Z", attempt=1, status="running", retry_of="j1"),
        job_row("j3", created_at="2026-01-01T00:00:03Z", attempt=2, status="failed", user_id="user_b", retry_of=None),
        job_row("j4", created_at="2026-01-01T00:00:04Z", attempt=3, name="a,b (c)", retry_of=None),
    ]
    response = api.post("/jobs", json=rows, headers={"Prefer": "return=representation"})
    assert response.status_code == 201, response.text
    return response.json()


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code in (200, 206), response.text
    return [row["id"] for row in response.json()]


def error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details", "hint"}
    assert body["code"] == code
    return body


# --- reads ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ("attempt=eq.1", ["j2"]),
        ("attempt=neq.1", ["j1", "j3", "j4"]),
        ("attempt=gt.1", ["j3", "j4"]),
        ("attempt=gte.1", ["j2", "j3", "j4"]),
        ("attempt=lt.1", ["j1"]),
        ("attempt=lte.1", ["j1", "j2"]),
        ("created_at=lt.2026-01-01T00:00:02.5Z", ["j1", "j2"]),
        ("status=in.(running,failed)", ["j2", "j3"]),
        ('name=in.("a,b (c)",nope)', ["j4"]),
        ("status=in.()", []),
        ("retry_of=is.null", ["j1", "j3", "j4"]),
        ("attempt=gte.1&attempt=lte.2", ["j2", "j3"]),
    ],
)
def test_filters(api: httpx.Client, jobs, filter_: str, expected: list[str]) -> None:
    assert ids(api.get(f"/jobs?select=id&{filter_}&order=id")) == expected


@pytest.fixture
def flags(stack: SupabaseStack, api: httpx.Client) -> Iterator[None]:
    """A scratch table with a boolean column (the store's schema has none)."""
    with stack.cluster.connect(stack.database) as conn:
        conn.execute("create table public.subset_flags (id integer primary key, flag boolean)")
        conn.execute("insert into public.subset_flags values (1, true), (2, false), (3, null)")
    stack.subset.reload_schema()
    yield
    with stack.cluster.connect(stack.database) as conn:
        conn.execute("drop table public.subset_flags")
    stack.subset.reload_schema()


@pytest.mark.parametrize(("value", "expected"), [("true", [1]), ("false", [2]), ("null", [3]), ("unknown", [3])])
def test_is_filters_on_booleans(api: httpx.Client, flags, value: str, expected: list[int]) -> None:
    assert [row["id"] for row in api.get(f"/subset_flags?flag=is.{value}").json()] == expected


def test_a_filter_value_of_the_wrong_type_is_postgresqls_error(api: httpx.Client, jobs) -> None:
    error(api.get("/jobs?attempt=eq.many"), 400, "22P02")


def test_select_returns_only_the_listed_columns(api: httpx.Client, jobs) -> None:
    assert api.get("/jobs?select=id,status&id=eq.j2").json() == [{"id": "j2", "status": "running"}]
    assert set(api.get("/jobs?select=*&id=eq.j2").json()[0]) >= {"id", "spec", "progress", "created_at"}


def test_an_unknown_column_is_400_42703(api: httpx.Client, jobs) -> None:
    error(api.get("/jobs?select=id,nope"), 400, "42703")
    error(api.get("/jobs?nope=eq.1"), 400, "42703")


def test_order_by_several_columns_with_nulls_placement(api: httpx.Client, jobs) -> None:
    assert ids(api.get("/jobs?select=id&order=user_id.desc,created_at.asc")) == ["j3", "j1", "j2", "j4"]
    assert ids(api.get("/jobs?select=id&order=retry_of.asc.nullsfirst,id.desc")) == ["j4", "j3", "j1", "j2"]
    assert ids(api.get("/jobs?select=id&order=retry_of.desc.nullslast,id")) == ["j2", "j1", "j3", "j4"]


def test_limit_and_offset_with_content_range(api: httpx.Client, jobs) -> None:
    response = api.get("/jobs?select=id&order=id&offset=1&limit=2")
    assert (ids(response), response.status_code, response.headers["content-range"]) == (["j2", "j3"], 200, "1-2/*")


def test_count_exact_gives_the_total_and_206_for_a_partial_range(api: httpx.Client, jobs) -> None:
    partial = api.get("/jobs?select=id&order=id&limit=2", headers={"Prefer": "count=exact"})
    assert (partial.status_code, partial.headers["content-range"]) == (206, "0-1/4")
    whole = api.get("/jobs?select=id", headers={"Prefer": "count=exact"})
    assert (whole.status_code, whole.headers["content-range"]) == (200, "0-3/4")
    empty = api.get("/jobs?id=eq.none", headers={"Prefer": "count=exact"})
    assert (empty.status_code, empty.headers["content-range"], empty.json()) == (200, "*/0", [])


def test_an_offset_past_the_counted_end_is_416(api: httpx.Client, jobs) -> None:
    error(api.get("/jobs?offset=9", headers={"Prefer": "count=exact"}), 416, "PGRST103")


def test_head_counts_without_a_body(api: httpx.Client, client: Client, jobs) -> None:
    response = api.head("/jobs?select=*&status=eq.queued", headers={"Prefer": "count=exact"})
    assert (response.status_code, response.content, response.headers["content-range"]) == (200, b"", "0-1/2")
    assert client.table("jobs").select("*", count="exact", head=True).eq("status", "queued").execute().count == 2


def test_singular_object_for_exactly_one_row_else_406_pgrst116(api: httpx.Client, client: Client, jobs) -> None:
    one = api.get("/jobs?select=id&id=eq.j1", headers={"Accept": "application/vnd.pgrst.object+json"})
    assert (one.status_code, one.json()) == (200, {"id": "j1"})
    assert one.headers["content-type"].startswith("application/vnd.pgrst.object+json")
    body = error(api.get("/jobs?id=eq.none", headers={"Accept": "application/vnd.pgrst.object+json"}), 406, "PGRST116")
    assert body["details"] == "The result contains 0 rows"
    assert client.table("jobs").select("id").eq("id", "none").maybe_single().execute() is None
    with pytest.raises(APIError) as raised:
        client.table("jobs").select("id").single().execute()
    assert raised.value.code == "PGRST116"


def test_timestamps_come_back_in_utc_iso_8601(api: httpx.Client, jobs) -> None:
    assert api.get("/jobs?select=created_at&id=eq.j1").json() == [{"created_at": "2026-01-01T00:00:01+00:00"}]


# --- writes ---------------------------------------------------------------------------------------------------


def test_insert_returns_201_with_the_representation_or_nothing(api: httpx.Client) -> None:
    created = api.post("/jobs?select=id,attempt", json=job_row("n1"), headers={"Prefer": "return=representation"})
    assert (created.status_code, created.json()) == (201, [{"id": "n1", "attempt": 0}])
    minimal = api.post("/jobs", json=job_row("n2"), headers={"Prefer": "return=minimal"})
    assert (minimal.status_code, minimal.content, minimal.headers["content-range"]) == (201, b"", "*/*")
    assert ids(api.get("/jobs?select=id&order=id")) == ["n1", "n2"]


def test_insert_with_columns_makes_missing_keys_null_or_with_missing_default_the_default(api: httpx.Client) -> None:
    rows = [job_row("c1"), job_row("c2") | {"attempt": 4}]
    columns = '"id","user_id","name","status","spec","attempt"'
    as_null = api.post(f"/jobs?columns={columns}", json=rows, headers={"Prefer": "return=representation"})
    assert as_null.status_code == 400 and as_null.json()["code"] == "23502"  # attempt is not null, no default used
    as_default = api.post(
        f"/jobs?columns={columns}&select=id,attempt",
        json=rows,
        headers={"Prefer": "return=representation,missing=default"},
    )
    assert as_default.json() == [{"id": "c1", "attempt": 0}, {"id": "c2", "attempt": 4}]


def test_rows_with_different_keys_need_columns(api: httpx.Client) -> None:
    error(api.post("/jobs", json=[job_row("k1"), job_row("k2") | {"attempt": 1}]), 400, "PGRST102")


def test_a_duplicate_key_is_409_23505(api: httpx.Client, jobs) -> None:
    body = error(api.post("/jobs", json=job_row("j1")), 409, "23505")
    assert body["details"] == "Key (id)=(j1) already exists."


def test_a_missing_foreign_key_is_409_23503(api: httpx.Client) -> None:
    error(api.post("/events", json={"job_id": "nope", "kind": "log", "message": "m"}), 409, "23503")


def test_upsert_merge_duplicates_updates_the_existing_row(api: httpx.Client, jobs) -> None:
    response = api.post(
        "/jobs?on_conflict=id&select=id,name",
        json=[job_row("j1", name="renamed"), job_row("j9")],
        headers={"Prefer": "return=representation,resolution=merge-duplicates"},
    )
    assert (response.status_code, response.json()) == (
        201,
        [{"id": "j1", "name": "renamed"}, {"id": "j9", "name": "name-j9"}],
    )


def test_upsert_ignore_duplicates_keeps_the_existing_row(client: Client, jobs) -> None:
    client.table("jobs").upsert(job_row("j1", name="ignored"), on_conflict="id", ignore_duplicates=True).execute()
    assert client.table("jobs").select("name").eq("id", "j1").execute().data == [{"name": "name-j1"}]


def test_patch_updates_the_filtered_rows_and_returns_them(api: httpx.Client, client: Client, jobs) -> None:
    response = api.patch(
        "/jobs?id=eq.j1&status=in.(queued)&select=id,status,progress",
        json={"status": "starting", "progress": {"step": 3}},
        headers={"Prefer": "return=representation"},
    )
    assert (response.status_code, response.json()) == (
        200,
        [{"id": "j1", "status": "starting", "progress": {"step": 3}}],
    )
    lost = client.table("jobs").update({"status": "starting"}).eq("id", "j1").in_("status", ["queued"]).execute()
    assert lost.data == []


def test_patch_without_representation_is_204(api: httpx.Client, jobs) -> None:
    response = api.patch("/jobs?id=eq.j1", json={"name": "x"}, headers={"Prefer": "return=minimal"})
    assert (response.status_code, response.content) == (204, b"")


def test_delete_removes_the_filtered_rows(client: Client, jobs) -> None:
    deleted = client.table("jobs").delete().eq("user_id", "user_b").execute()
    assert [row["id"] for row in deleted.data] == ["j3"]
    assert len(client.table("jobs").select("id").execute().data) == 3


def test_delete_with_count_reports_how_many(client: Client, jobs) -> None:
    response = client.table("jobs").delete(count="exact", returning="minimal").lt("attempt", 2).execute()
    assert response.count == 2


def test_a_failed_write_leaves_nothing_behind(api: httpx.Client, jobs) -> None:
    # the second row violates the status check: the whole request is one transaction
    response = api.post("/jobs", json=[job_row("t1"), job_row("t2", status="bogus")])
    error(response, 400, "23514")
    assert ids(api.get("/jobs?select=id&id=eq.t1")) == []


def test_a_singular_write_of_several_rows_is_rolled_back(api: httpx.Client, jobs) -> None:
    headers = {"Accept": "application/vnd.pgrst.object+json", "Prefer": "return=representation"}
    error(api.patch("/jobs?user_id=eq.user_a", json={"name": "x"}, headers=headers), 406, "PGRST116")
    assert "x" not in [row["name"] for row in api.get("/jobs?select=name").json()]


# --- functions ------------------------------------------------------------------------------------------------


@pytest.fixture
def functions(stack: SupabaseStack) -> Iterator[None]:
    with stack.cluster.connect(stack.database) as conn:
        conn.execute(
            """
            create function public.test_add(a integer, b integer default 10) returns integer
                language sql immutable as $$ select a + b $$;
            create function public.test_jobs_of(owner text) returns setof public.jobs
                language sql stable as $$ select * from public.jobs where user_id = owner order by id $$;
            create function public.test_touch(job text) returns void
                language sql as $$ update public.jobs set name = 'touched' where id = job $$;
            """
        )
    stack.subset.reload_schema()
    yield
    with stack.cluster.connect(stack.database) as conn:
        conn.execute("drop function test_add, test_jobs_of, test_touch")
    stack.subset.reload_schema()


def test_rpc_post_with_named_arguments(client: Client, functions) -> None:
    assert client.rpc("test_add", {"a": 2, "b": 3}).execute().data == 5
    assert client.rpc("test_add", {"a": 2}).execute().data == 12


def test_rpc_get_takes_arguments_from_the_query(api: httpx.Client, functions) -> None:
    assert api.get("/rpc/test_add?a=1&b=1").json() == 2


def test_rpc_returning_rows_is_an_array_of_objects(client: Client, jobs, functions) -> None:
    rows = client.rpc("test_jobs_of", {"owner": "user_b"}).execute().data
    assert [row["id"] for row in rows] == ["j3"]


def test_rpc_of_a_void_function_is_204_and_its_write_commits(api: httpx.Client, jobs, functions) -> None:
    assert api.post("/rpc/test_touch", json={"job": "j1"}).status_code == 204
    assert api.get("/jobs?select=name&id=eq.j1").json() == [{"name": "touched"}]


def test_rpc_get_runs_read_only(api: httpx.Client, jobs, functions) -> None:
    error(api.get("/rpc/test_touch?job=j1"), 405, "25006")


def test_an_unknown_function_or_argument_is_404_pgrst202(api: httpx.Client, functions) -> None:
    error(api.post("/rpc/nope", json={}), 404, "PGRST202")
    error(api.post("/rpc/test_add", json={"a": 1, "c": 2}), 404, "PGRST202")


# --- auth and row-level security ------------------------------------------------------------------------------


def test_a_user_token_sees_only_that_users_rows(stack: SupabaseStack, jobs) -> None:
    token = stack.user_token("user_b")
    headers = {"apikey": stack.anon_key, "Authorization": f"Bearer {token}"}
    response = httpx.get(f"{stack.url}{REST}/jobs?select=id", headers=headers)
    assert ids(response) == ["j3"]


def test_a_user_cannot_write_403_42501(stack: SupabaseStack, jobs) -> None:
    headers = {"apikey": stack.anon_key, "Authorization": f"Bearer {stack.user_token('user_a')}"}
    error(httpx.post(f"{stack.url}{REST}/jobs", json=job_row("u1"), headers=headers), 403, "42501")
    error(httpx.patch(f"{stack.url}{REST}/jobs?id=eq.j1", json={"name": "x"}, headers=headers), 403, "42501")


def test_no_token_is_anon_and_anon_is_refused_401_42501(stack: SupabaseStack, jobs) -> None:
    error(httpx.get(f"{stack.url}{REST}/jobs"), 401, "42501")
    error(httpx.get(f"{stack.url}{REST}/jobs", headers={"apikey": stack.anon_key}), 401, "42501")


def test_a_token_with_a_wrong_signature_is_401_pgrst301(stack: SupabaseStack) -> None:
    forged = postgrest.mint_jwt("another-secret-that-is-at-least-32-bytes", "service_role")
    error(httpx.get(f"{stack.url}{REST}/jobs", headers={"apikey": forged}), 401, "PGRST301")


def test_an_expired_token_is_401_pgrst303(stack: SupabaseStack) -> None:
    expired = postgrest.mint_jwt(JWT_SECRET, "service_role", ttl_s=-60)
    error(httpx.get(f"{stack.url}{REST}/jobs", headers={"Authorization": f"Bearer {expired}"}), 401, "PGRST303")


def test_a_role_claim_outside_the_api_roles_is_refused(stack: SupabaseStack) -> None:
    superuser = postgrest.mint_jwt(JWT_SECRET, "postgres")
    error(httpx.get(f"{stack.url}{REST}/jobs", headers={"apikey": superuser}), 401, "PGRST301")


def test_an_unknown_table_is_404_pgrst205(api: httpx.Client) -> None:
    error(api.get("/nope"), 404, "PGRST205")


def test_another_schema_is_406_pgrst106(api: httpx.Client) -> None:
    error(api.get("/jobs", headers={"Accept-Profile": "private"}), 406, "PGRST106")


# --- everything else is refused -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/jobs?or=(id.eq.j1,id.eq.j2)", {}),
        ("GET", "/jobs?and=(id.eq.j1)", {}),
        ("GET", "/jobs?id=not.eq.j1", {}),
        ("GET", "/jobs?name=like.*x*", {}),
        ("GET", "/jobs?select=id,events(*)", {}),
        ("GET", "/jobs?select=ident:id", {}),
        ("GET", "/jobs?select=id::text", {}),
        ("GET", "/jobs?select=spec->n", {}),
        ("GET", "/jobs?select=id;drop table jobs", {}),
        ("GET", "/jobs?limit=-1", {}),
        ("GET", "/jobs?order=id.sideways", {}),
        ("GET", "/jobs?limit=1&limit=2", {}),
        ("GET", "/jobs", {"Prefer": "count=planned"}),
        ("GET", "/jobs", {"Prefer": "handling=strict"}),
        ("PATCH", "/jobs?id=eq.j1&limit=1", {}),
        ("PATCH", "/jobs?id=eq.j1&order=id", {}),
        ("PUT", "/jobs?id=eq.j1", {}),
        ("POST", "/jobs", {"Content-Type": "text/csv"}),
        ("POST", "/rpc/test_add?a=1", {}),
    ],
)
def test_anything_unsupported_is_400_pgrst100(api: httpx.Client, jobs, method, path, headers) -> None:
    response = api.request(method, path, headers=headers, content=b'{"name": "x"}')
    error(response, 400, "PGRST100")
    assert ids(api.get("/jobs?select=id&order=id")) == ["j1", "j2", "j3", "j4"]  # and nothing happened


def test_an_unsupported_media_type_is_406(api: httpx.Client) -> None:
    error(api.get("/jobs", headers={"Accept": "text/csv"}), 406, "PGRST107")
