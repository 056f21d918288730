"""GET / serves the chat page, with the API open and with API keys configured; its files are under /static."""

from collections.abc import AsyncIterator

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from tests.api.inprocess import asgi_client


@pytest.fixture(params=["open", "keys"])
async def page_client(request: pytest.FixtureRequest, redis_url: str, tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    """The app without its lifespan: the page needs neither models nor Redis."""
    keys = "page-key:acme" if request.param == "keys" else None
    app = create_app(Settings(redis_url=redis_url, data_dir=tmp_path, api_keys=keys))
    async with asgi_client(app) as http:
        yield http


async def test_the_page_loads_without_a_key(page_client: httpx.AsyncClient) -> None:
    page = await page_client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>Parley</title>" in page.text and 'src="/static/app.js"' in page.text
    for name, kind in [("app.js", "javascript"), ("recorder-worklet.js", "javascript"), ("style.css", "text/css")]:
        asset = await page_client.get(f"/static/{name}")
        assert asset.status_code == 200 and kind in asset.headers["content-type"], name


async def test_the_docs_stay_and_unknown_files_get_the_error_shape(page_client: httpx.AsyncClient) -> None:
    assert (await page_client.get("/docs")).status_code == 200
    assert "/" not in (await page_client.get("/openapi.json")).json()["paths"]  # the page is not an API route
    missing = await page_client.get("/static/nothing-here.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("page_client", ["keys"], indirect=True)
async def test_keys_still_guard_the_api(page_client: httpx.AsyncClient) -> None:
    assert (await page_client.get("/")).status_code == 200
    sessions = await page_client.post("/v1/sessions", headers={"Authorization": "Bearer wrong"})
    assert sessions.status_code == 401 and sessions.json()["error"]["code"] == "unauthorized"
