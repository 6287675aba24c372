"""The web dashboard the API serves at `/`: static files (static/, with uPlot vendored under static/vendor/), nothing
built at run time and nothing fetched from a CDN. It talks to the same JSON API and event streams as any client.

Sign-in: with Clerk configured the page loads Clerk's frontend (clerk-js from the instance's Frontend API host) and
sends its session token as a bearer; in embedded mode the user pastes a token (`robotrain token --user NAME`); the
page never mints one. Media and downloads are fetched with the bearer header into blob URLs, so no artifact URL works
without the header and isolation is the API's as everywhere.

The dashboard's own Content-Security-Policy (`dashboard_csp`) allows its own scripts, styles, media and connections
(and Clerk's host when Clerk is configured); the JSON API keeps its strict one."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from robotrain.settings import Settings

STATIC_DIR = Path(__file__).with_name("static")
ASSETS_PATH = "/ui"


def clerk_frontend_host(publishable_key: str | None) -> str | None:
    """The Frontend API host a Clerk publishable key encodes (`pk_test_` / `pk_live_` + base64("<host>$")), or None.
    The same decoding as the verifier's (robotrain.auth.clerk), which the API layer may not import."""
    if not publishable_key or not publishable_key.startswith(("pk_test_", "pk_live_")):
        return None
    body = publishable_key.split("_", 2)[2]
    try:
        decoded = base64.b64decode(body + "=" * (-len(body) % 4), validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded[:-1] if decoded.endswith("$") and "/" not in decoded else None


def dashboard_csp(settings: Settings) -> str:
    clerk = clerk_frontend_host(settings.clerk_publishable_key)
    scripts, connect, images, frames, styles = ["'self'"], ["'self'"], ["'self'", "data:", "blob:"], [], ["'self'"]
    if clerk:
        # Clerk's documented CSP needs: clerk-js and its API on the Frontend API host, avatars from img.clerk.com,
        # its bot check in a Cloudflare frame, and inline styles for its components.
        scripts.append(f"https://{clerk}")
        connect.append(f"https://{clerk}")
        images.append("https://img.clerk.com")
        frames.append("https://challenges.cloudflare.com")
        styles.append("'unsafe-inline'")
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {' '.join(scripts)}",
            f"style-src {' '.join(styles)}",
            f"img-src {' '.join(images)}",
            "media-src 'self' blob:",
            f"connect-src {' '.join(connect)}",
            "worker-src 'self' blob:",
            f"frame-src {' '.join(frames) or chr(39) + 'none' + chr(39)}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ]
    )


def is_dashboard_path(path: str) -> bool:
    return path == "/" or path == ASSETS_PATH or path.startswith(ASSETS_PATH + "/")


def install_dashboard(app: FastAPI, settings: Settings) -> None:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @router.get(f"{ASSETS_PATH}/config.json")
    def config() -> JSONResponse:
        """How the page signs in: Clerk (with its publishable key and Frontend API host) or a pasted token."""
        clerk = clerk_frontend_host(settings.clerk_publishable_key)
        if settings.uses_clerk and clerk:
            return JSONResponse(
                {"auth": "clerk", "publishable_key": settings.clerk_publishable_key, "clerk_host": clerk}
            )
        return JSONResponse({"auth": "token"})

    app.include_router(router)
    app.mount(ASSETS_PATH, StaticFiles(directory=STATIC_DIR), name="dashboard")
