"""With Redis unreachable, every store-backed endpoint answers 503 with Retry-After, never 500."""

import httpx
from asgi_lifespan import LifespanManager

from app.main import create_app


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
