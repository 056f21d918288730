"""With Redis unreachable, paused or crashed, every store-backed endpoint answers 503 with Retry-After, never 500;
with Redis back, Parley answers again without a restart."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.main import create_app
from tests.api.inprocess import asgi_client
from tests.server import RedisProcess


async def test_redis_unreachable_is_503_with_retry_after(api_settings):
    app = create_app(api_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0", "redis_timeout_s": 0.5}))
    async with LifespanManager(app, startup_timeout=120):
        await app.state.loading
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://parley") as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["redis"] is False
            for method, url, body in [
                ("POST", "/v1/sessions", None),
                ("GET", "/v1/sessions/" + "a" * 32, None),
                ("POST", "/v1/sessions/" + "a" * 32 + "/turns", {"text": "hello"}),
                ("DELETE", "/v1/sessions/" + "a" * 32, None),
            ]:
                response = await client.request(method, url, json=body)
                assert response.status_code == 503, (method, url, response.text)
                assert response.json()["error"]["code"] == "store_unavailable"
                assert int(response.headers["Retry-After"]) >= 1
            assert b"parley_redis_errors_total 4.0" in app.state.metrics.render()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_paused_and_crashed_redis_are_503_and_parley_recovers_with_the_data(api_settings, own_redis):
    """Step by step, no load and no clock: each request during an outage answers 503 once its Redis call
    times out (redis_timeout_s) or is refused; the first after Redis is back answers from the same data.
    (tests/test_redis_faults.py runs these outages under load: pytest -m soak.)"""
    app = create_app(api_settings.model_copy(update={"redis_url": own_redis.url, "redis_timeout_s": 0.5}))
    async with LifespanManager(app, startup_timeout=120):
        await app.state.loading
        async with asgi_client(app) as client:
            sid = (await client.post("/v1/sessions")).json()["id"]
            assert (await client.post(f"/v1/sessions/{sid}/turns", json={"text": "hello"})).status_code == 200
            before = (await client.get(f"/v1/sessions/{sid}")).json()
            for outage, back in ((own_redis.pause, own_redis.resume), (own_redis.kill, own_redis.start)):
                outage()
                assert (await client.get("/readyz")).status_code == 503
                for method, url, body in [("GET", f"/v1/sessions/{sid}", None),
                                          ("POST", f"/v1/sessions/{sid}/turns", {"text": "my lamp arrived broken"})]:
                    response = await client.request(method, url, json=body)
                    assert response.status_code == 503, (outage.__name__, method, url, response.text)
                    assert response.json()["error"]["code"] == "store_unavailable" and response.headers["Retry-After"]
                back()
                assert (await client.get("/readyz")).status_code == 200, outage.__name__
                assert (await client.get(f"/v1/sessions/{sid}")).json() == before, outage.__name__
            turn = await client.post(f"/v1/sessions/{sid}/turns", json={"text": "my lamp arrived broken"})
            assert turn.status_code == 200 and turn.json()["turn"] == 2
