"""The web chat page: GET / serves app/static/index.html; its scripts and styles are under /static.

Plain files, no build step. The page loads without an API key (it holds no data); the key a user
types is kept in the browser and sent by the page's own calls to /v1, which check it as usual.
"""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["web"])


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


def static_files() -> StaticFiles:
    """Mounted at /static (not at /, so unknown paths and wrong methods keep the API's JSON errors)."""
    return StaticFiles(directory=STATIC_DIR)
