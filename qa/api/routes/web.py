"""The chat page and its static files, shipped inside the package (no CDN, works offline)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

WEB_DIR = Path(__file__).resolve().parents[2] / "web"

# Scripts and styles only from our own origin: no inline script can run, whatever text an article holds.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)

router = APIRouter(include_in_schema=False)


def _file(name: str, media_type: str) -> FileResponse:
    return FileResponse(
        WEB_DIR / name,
        media_type=media_type,
        headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
    )


@router.get("/")
async def index() -> FileResponse:
    return _file("index.html", "text/html; charset=utf-8")


@router.get("/static/app.js")
async def script() -> FileResponse:
    return _file("app.js", "text/javascript; charset=utf-8")


@router.get("/static/app.css")
async def style() -> FileResponse:
    return _file("app.css", "text/css; charset=utf-8")
