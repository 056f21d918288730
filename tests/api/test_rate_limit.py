"""Rate limits per tenant, counted in Redis: 429 with Retry-After, shared by replicas, tenants apart."""

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import SecretStr

from app.main import create_app
from app.ratelimit import RateLimiter
from app.store import StoreUnavailable, connect
from tests.api.inprocess import asgi_client
from tests.server import delete_prefix, unique_prefix

KEYS = {"a": "rl-key-a-55d1", "b": "rl-key-b-0e9a", "c": "rl-key-c-b7f3", "d": "rl-key-d-18c4", "e": "rl-key-e-6a02"}
TURN_LIMIT, REQUEST_LIMIT = 3, 12


def bearer(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


@pytest.fixture(scope="module")
async def replicas(api_settings) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two app instances on the same Redis and prefix, as two replicas would be."""
    settings = api_settings.model_copy(update={
        "api_keys": SecretStr(",".join(f"{key}:t{name}" for name, key in KEYS.items())),
        "redis_prefix": unique_prefix(), "turn_rate_limit_per_min": TURN_LIMIT, "rate_limit_per_min": REQUEST_LIMIT,
    })
    apps = [create_app(settings), create_app(settings)]
    try:
        async with LifespanManager(apps[0], startup_timeout=120), LifespanManager(apps[1], startup_timeout=120):
            for app in apps:
                await app.state.loading
            clients = [asgi_client(app) for app in apps]
            async with clients[0], clients[1]:
                yield clients[0], clients[1]
    finally:
        delete_prefix(settings.redis_url, settings.redis_prefix)


def assert_limited(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["X-RateLimit-Limit"] == str(limit)
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(response.headers["X-RateLimit-Reset"]) <= 60


async def test_the_turn_after_the_limit_is_429_and_other_tenants_go_on(replicas):
    one, _ = replicas
    sid = (await one.post("/v1/sessions", headers=bearer("a"))).json()["id"]
    for n in range(TURN_LIMIT):
        response = await one.post(f"/v1/sessions/{sid}/turns", json={"text": "hi"}, headers=bearer("a"))
        assert response.status_code == 200, response.text
        assert response.headers["X-RateLimit-Limit"] == str(TURN_LIMIT)
        assert response.headers["X-RateLimit-Remaining"] == str(TURN_LIMIT - n - 1)
    assert_limited(await one.post(f"/v1/sessions/{sid}/turns", json={"text": "hi"}, headers=bearer("a")), TURN_LIMIT)
    assert (await one.get(f"/v1/sessions/{sid}", headers=bearer("a"))).status_code == 200  # only turns are over

    other = (await one.post("/v1/sessions", headers=bearer("b"))).json()["id"]
    assert (await one.post(f"/v1/sessions/{other}/turns", json={"text": "hi"}, headers=bearer("b"))).status_code == 200


async def test_replicas_share_the_counter(replicas):
    one, two = replicas
    sid = (await one.post("/v1/sessions", headers=bearer("c"))).json()["id"]
    for client in (one, two, one):
        response = await client.post(f"/v1/sessions/{sid}/turns", json={"text": "hi"}, headers=bearer("c"))
        assert response.status_code == 200, response.text
    assert_limited(await two.post(f"/v1/sessions/{sid}/turns", json={"text": "hi"}, headers=bearer("c")), TURN_LIMIT)


async def test_request_limit_covers_every_v1_endpoint(replicas):
    one, two = replicas
    sid = (await one.post("/v1/sessions", headers=bearer("d"))).json()["id"]
    for n in range(REQUEST_LIMIT - 1):
        response = await (one if n % 2 else two).get(f"/v1/sessions/{sid}/state", headers=bearer("d"))
        assert response.status_code == 200
    assert_limited(await one.get(f"/v1/sessions/{sid}", headers=bearer("d")), REQUEST_LIMIT)
    assert_limited(await two.delete(f"/v1/sessions/{sid}", headers=bearer("d")), REQUEST_LIMIT)
    assert (await one.get("/healthz")).status_code == 200  # ops endpoints are not counted


async def test_chat_completions_count_as_turns_and_are_refused_in_openai_shape(replicas):
    one, _ = replicas
    chat = {"model": "parley", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(TURN_LIMIT):
        assert (await one.post("/v1/chat/completions", json=chat, headers=bearer("e"))).status_code == 200
    refused = await one.post("/v1/chat/completions", json=chat, headers=bearer("e"))
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["error"]["type"] == "rate_limit_error" and refused.json()["error"]["code"] == "rate_limited"


async def test_zero_disables_a_limit_and_redis_down_is_store_unavailable(redis_url):
    prefix = unique_prefix()
    client = connect(redis_url)
    try:
        limiter = RateLimiter(client, prefix=prefix, limits={"req": 0, "turn": 2})
        assert await limiter.hit("t", "req") is None
        verdicts = [await limiter.hit("t", "turn") for _ in range(3)]
        assert [v.allowed for v in verdicts] == [True, True, False]
        assert await client.pttl(f"{prefix}:rl:t:turn") > 0
    finally:
        await client.aclose()
        delete_prefix(redis_url, prefix)

    down = connect("redis://127.0.0.1:1/0", socket_timeout_s=0.5)
    try:
        with pytest.raises(StoreUnavailable):
            await RateLimiter(down, prefix=prefix, limits={"req": 5}).hit("t", "req")
    finally:
        await down.aclose()
