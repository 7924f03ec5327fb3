"""HTTP only: the web console under /console (plain HTML, vanilla JS and CSS from ./static).

The pages are static files: everything they show comes from the JSON API with the user's
bearer token, so the API's own checks are the only access control. Nothing is fetched
from outside the server (the kiosk drawings are SVG drawn by the pages themselves), and
the Content-Security-Policy keeps it that way."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from server.core.errors import NotFound

STATIC_DIR = Path(__file__).parent / "static"

PAGES = frozenset({"login", "partner", "advertiser", "operator"})
#: File names only (no directories, no dots but the extension's): nothing outside STATIC_DIR.
STATIC_NAME = re.compile(r"[a-z][a-z0-9-]*\.(js|css|svg)")

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data: blob:; media-src 'self' blob:; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files, changed with each deployment: always revalidate (ETag answers 304).
    "Cache-Control": "no-cache",
}
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

router = APIRouter(prefix="/console", tags=["console"], include_in_schema=False)


@router.get("")
@router.get("/")
def console_root() -> RedirectResponse:
    return RedirectResponse("/console/login", status_code=302)


@router.get("/static/{name}")
def static_file(name: str) -> FileResponse:
    path = STATIC_DIR / name
    if not STATIC_NAME.fullmatch(name) or not path.is_file():
        raise NotFound(f"no console file {name!r}", name=name)
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=HEADERS)


@router.get("/{page}")
def page(page: str) -> FileResponse:
    if page not in PAGES:
        raise NotFound(f"no console page {page!r}", page=page)
    return FileResponse(
        STATIC_DIR / f"{page}.html", media_type="text/html; charset=utf-8", headers=HEADERS
    )
