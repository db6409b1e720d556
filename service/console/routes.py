"""The operator console at /console: one static page plus its script and style, calling the JSON API from the
browser (it holds no rules of its own). The page carries no data and no key, so it is served without auth; the
API calls it makes carry the key the operator types, in a header."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from service.errors import NotFound

router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).with_name("static")
FILES = {"console.js": "text/javascript", "console.css": "text/css"}
# form-action 'none': even without JavaScript no form can put what was typed into a URL.
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@router.get("/console")
async def console() -> FileResponse:
    return FileResponse(STATIC / "console.html", media_type="text/html", headers=HEADERS)


@router.get("/console/static/{file}")
async def console_static(file: str) -> FileResponse:
    if file not in FILES:
        raise NotFound(f"no console file {file[:40]!r}", code="not_found")
    return FileResponse(STATIC / file, media_type=FILES[file], headers=HEADERS)
