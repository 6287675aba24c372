"""The dashboard's HTTP side: served at / with static assets under /ui/, its own Content-Security-Policy (the JSON API
keeps the strict one), the sign-in mode it is told, and artifacts served with a media type a <video> can play."""

from __future__ import annotations

import base64

from fastapi.testclient import TestClient

from robotrain.api.dashboard import clerk_frontend_host, dashboard_csp
from robotrain.settings import Settings
from robotrain.wiring import build_components
from tests.support.app import api_app


def test_the_page_and_its_assets_are_served_with_the_dashboards_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/ui/app.js" defer></script>' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "media-src 'self' blob:" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    for asset, kind in (
        ("/ui/app.js", "javascript"),
        ("/ui/style.css", "text/css"),
        ("/ui/vendor/uPlot.iife.min.js", "javascript"),
    ):
        answer = client.get(asset)
        assert answer.status_code == 200 and kind in answer.headers["content-type"], asset
    assert client.get("/ui/vendor/uPlot.LICENSE").text.startswith("The MIT License")
    assert client.get("/ui/config.json").json() == {"auth": "token"}
    api = client.get("/healthz").headers["content-security-policy"]
    assert api.startswith("default-src 'none'") and "script-src" not in api


def test_with_clerk_the_page_loads_clerks_frontend_from_its_host_only(tmp_path) -> None:
    key = "pk_test_" + base64.b64encode(b"clerk.example.com$").decode().rstrip("=")
    assert clerk_frontend_host(key) == "clerk.example.com" and clerk_frontend_host("pk_test_!!") is None
    settings = Settings(data_dir=tmp_path / "data", CLERK_PUBLISHABLE_KEY=key, CLERK_ISSUER="https://clerk.example.com")
    policy = dashboard_csp(settings)
    assert (
        "script-src 'self' https://clerk.example.com" in policy
        and "connect-src 'self' https://clerk.example.com" in policy
    )
    with TestClient(api_app(build_components(settings))) as client:
        assert client.get("/ui/config.json").json() == {
            "auth": "clerk",
            "publishable_key": key,
            "clerk_host": "clerk.example.com",
        }


def test_videos_are_served_with_their_type_and_ranges(client: TestClient, components, alice) -> None:
    job = client.post(
        "/jobs", json={"policy": {"type": "mlp"}, "dataset": {"uri": "builtin://push2d?episodes=4"}}, headers=alice
    ).json()
    video = components.artifacts.job_dir(job["id"]) / "eval" / "videos" / "step_000010" / "episode_0.webm"
    video.parent.mkdir(parents=True)
    video.write_bytes(bytes(range(256)) * 4)
    path = f"/jobs/{job['id']}/artifacts/eval/videos/step_000010/episode_0.webm"
    whole = client.get(path, headers=alice)
    assert whole.headers["content-type"] == "video/webm" and len(whole.content) == 1024
    part = client.get(path, headers={**alice, "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == (bytes(range(256)) * 4)[100:200]
    assert client.get(path).status_code == 401  # a URL alone is not enough: the page fetches it with the bearer
