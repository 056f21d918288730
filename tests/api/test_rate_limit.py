"""Rate limits, counted in Redis: per tenant (shared by replicas, tenants apart) and per end user (session,
client address), GCRA so that no burst fits across a window edge; 429 with Retry-After naming the limit."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from app.security.ratelimit import Limit, RateLimiter
from app.store.base import StoreUnavailable
from app.store.redis import close_client, connect
from tests.api.inprocess import asgi_client, in_process_app
from tests.server import delete_prefix, unique_prefix

KEYS = {"a": "rl-key-a-55d1", "b": "rl-key-b-0e9a", "c": "rl-key-c-b7f3", "d": "rl-key-d-18c4", "e": "rl-key-e-6a02"}
TURN_LIMIT, REQUEST_LIMIT = 3, 12
NO_USER_LIMITS = {"client_rate_limit_per_min": 0, "client_turn_rate_limit_per_min": 0,
                  "session_turn_rate_limit_per_min": 0}
NO_TENANT_LIMITS = {"rate_limit_per_min": 0, "turn_rate_limit_per_min": 0}


def bearer(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


@pytest.fixture(scope="module")
async def replicas(api_settings) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two app instances on the same Redis and prefix, as two replicas would be; tenant limits only."""
    settings = api_settings.model_copy(update={
        "api_keys": SecretStr(",".join(f"{key}:t{name}" for name, key in KEYS.items())),
        "redis_prefix": unique_prefix(), "turn_rate_limit_per_min": TURN_LIMIT, "rate_limit_per_min": REQUEST_LIMIT,
        **NO_USER_LIMITS,
    })
    async with in_process_app(settings) as one, in_process_app(settings) as two:
        async with asgi_client(one) as first, asgi_client(two) as second:
            yield first, second


def assert_limited(response: httpx.Response, limit: int, scope: str) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["X-RateLimit-Limit"] == str(limit)
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(response.headers["X-RateLimit-Reset"]) <= 60
    assert response.headers["X-RateLimit-Scope"] == scope
    assert f"retry after {response.headers['Retry-After']} s" in response.json()["error"]["message"]


async def test_the_turn_after_the_limit_is_429_and_other_tenants_go_on(replicas):
    one, _ = replicas
    sid = (await one.post("/v1/sessions", headers=bearer("a"))).json()["id"]
    for n in range(TURN_LIMIT):
        response = await one.post(f"/v1/sessions/{sid}/turns", json={"text": "hi"}, headers=bearer("a"))
        assert response.status_code == 200, response.text
        assert response.headers["X-RateLimit-Limit"] == str(TURN_LIMIT)
        assert response.headers["X-RateLimit-Remaining"] == str(TURN_LIMIT - n - 1)
    refused = await one.post(f"/v1/sessions/{sid}/turns", json={"text": "hi"}, headers=bearer("a"))
    assert_limited(refused, TURN_LIMIT, "tenant-turns")
    assert "3 turns per minute for this tenant" in refused.json()["error"]["message"]
    assert (await one.get(f"/v1/sessions/{sid}", headers=bearer("a"))).status_code == 200  # only turns are over

    other = (await one.post("/v1/sessions", headers=bearer("b"))).json()["id"]
    assert (await one.post(f"/v1/sessions/{other}/turns", json={"text": "hi"}, headers=bearer("b"))).status_code == 200


async def test_replicas_share_the_counter(replicas):
    one, two = replicas
    sid = (await one.post("/v1/sessions", headers=bearer("c"))).json()["id"]
    for client in (one, two, one):
        response = await client.post(f"/v1/sessions/{sid}/turns", json={"text": "hi"}, headers=bearer("c"))
        assert response.status_code == 200, response.text
    refused = await two.post(f"/v1/sessions/{sid}/turns", json={"text": "hi"}, headers=bearer("c"))
    assert_limited(refused, TURN_LIMIT, "tenant-turns")


async def test_request_limit_covers_every_v1_endpoint(replicas):
    one, two = replicas
    sid = (await one.post("/v1/sessions", headers=bearer("d"))).json()["id"]
    for n in range(REQUEST_LIMIT - 1):
        response = await (one if n % 2 else two).get(f"/v1/sessions/{sid}/state", headers=bearer("d"))
        assert response.status_code == 200
    assert_limited(await one.get(f"/v1/sessions/{sid}", headers=bearer("d")), REQUEST_LIMIT, "tenant-requests")
    assert_limited(await two.delete(f"/v1/sessions/{sid}", headers=bearer("d")), REQUEST_LIMIT, "tenant-requests")
    assert (await one.get("/healthz")).status_code == 200  # ops endpoints are not counted


async def test_chat_completions_count_as_turns_and_are_refused_in_openai_shape(replicas):
    one, _ = replicas
    chat = {"model": "parley", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(TURN_LIMIT):
        assert (await one.post("/v1/chat/completions", json=chat, headers=bearer("e"))).status_code == 200
    refused = await one.post("/v1/chat/completions", json=chat, headers=bearer("e"))
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["error"]["type"] == "rate_limit_error" and refused.json()["error"]["code"] == "rate_limited"


# --- per end user, in open mode: every customer of a public page is tenant "default" ----------------------

SESSION_TURNS, TENANT_TURNS, QUIET_SESSIONS = 3, 30, 10


@pytest.fixture(scope="module")
async def public_page(api_settings) -> AsyncIterator[FastAPI]:
    """No API keys; a tenant turn quota, a per-session turn limit, no per-address limit."""
    settings = api_settings.model_copy(update={
        "redis_prefix": unique_prefix(), **NO_USER_LIMITS, **NO_TENANT_LIMITS,
        "turn_rate_limit_per_min": TENANT_TURNS, "session_turn_rate_limit_per_min": SESSION_TURNS,
    })
    async with in_process_app(settings) as application:
        yield application


async def test_one_noisy_session_does_not_throttle_the_other_sessions_of_its_tenant(public_page):
    async def customer(n: int, turns: int) -> list[int]:
        async with asgi_client(public_page, peer=f"198.51.100.{n}") as http:
            sid = (await http.post("/v1/sessions")).json()["id"]
            return [(await http.post(f"/v1/sessions/{sid}/turns", json={"text": "where is my order?"})).status_code
                    for _ in range(turns)]

    async with asgi_client(public_page, peer="198.51.100.200") as noisy:
        sid = (await noisy.post("/v1/sessions")).json()["id"]

        async def hammer(times: int) -> list[httpx.Response]:  # as fast as its answers come
            return [await noisy.post(f"/v1/sessions/{sid}/turns", json={"text": "hi"}) for _ in range(times)]

        first = await hammer(15)
        later, *quiet = await asyncio.gather(hammer(10), *(customer(n, 2) for n in range(1, QUIET_SESSIONS + 1)))
    # 3 + 20 turns charged of the tenant's 30: the 22 refused tries of the noisy session used up nothing.
    assert quiet == [[200, 200]] * QUIET_SESSIONS
    assert [r.status_code for r in first + later] == [200] * SESSION_TURNS + [429] * (25 - SESSION_TURNS)
    refused = later[-1]
    assert_limited(refused, SESSION_TURNS, "session-turns")
    assert "3 turns per minute per session" in refused.json()["error"]["message"]
    assert int(refused.headers["Retry-After"]) <= 60 // SESSION_TURNS  # one turn comes back every 20 s


async def test_chat_completions_with_a_session_id_count_against_that_session(public_page):
    async with asgi_client(public_page, peer="198.51.100.201") as http:
        sid = (await http.post("/v1/sessions")).json()["id"]
        chat = {"model": "parley", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(SESSION_TURNS):
            ok = await http.post("/v1/chat/completions", json=chat, headers={"X-Session-Id": sid})
            assert ok.status_code == 200 and ok.headers["X-RateLimit-Scope"] == "session-turns"
        refused = await http.post("/v1/chat/completions", json=chat, headers={"X-Session-Id": sid})
        assert refused.status_code == 429 and refused.headers["X-RateLimit-Scope"] == "session-turns"
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert (await http.post("/v1/chat/completions", json=chat)).status_code == 200  # stateless: no session


CLIENT_REQUESTS = 5
PROXY, OTHER_PROXY = "10.0.0.2", "10.0.0.5"


@pytest.fixture(scope="module")
async def behind_proxy(api_settings) -> AsyncIterator[FastAPI]:
    """Open mode with a per-client-address request limit; proxies in 10.0.0.0/8 are trusted."""
    settings = api_settings.model_copy(update={
        "redis_prefix": unique_prefix(), **NO_USER_LIMITS, **NO_TENANT_LIMITS,
        "client_rate_limit_per_min": CLIENT_REQUESTS, "trusted_proxies": "10.0.0.0/8",
    })
    async with in_process_app(settings) as application:
        yield application


async def create_sessions(application: FastAPI, count: int, *, peer: str, forwarded: list[str] | None = None,
                          ) -> list[int]:
    async with asgi_client(application, peer=peer) as http:
        return [(await http.post("/v1/sessions", headers={"X-Forwarded-For": forwarded[i]} if forwarded else None)
                 ).status_code for i in range(count)]


async def test_a_noisy_client_address_is_throttled_while_others_pass(behind_proxy):
    noisy = await create_sessions(behind_proxy, CLIENT_REQUESTS + 3, peer="198.51.100.7")
    assert noisy == [201] * CLIENT_REQUESTS + [429] * 3
    assert await create_sessions(behind_proxy, 2, peer="198.51.100.8") == [201, 201]
    async with asgi_client(behind_proxy, peer="198.51.100.7") as http:
        refused = await http.post("/v1/sessions")
    assert_limited(refused, CLIENT_REQUESTS, "client-requests")
    assert "5 requests per minute per client address" in refused.json()["error"]["message"]


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(behind_proxy):
    spoofed = [f"203.0.113.{n}" for n in range(CLIENT_REQUESTS + 2)]  # a new "client" on every request
    statuses = await create_sessions(behind_proxy, len(spoofed), peer="198.51.100.9", forwarded=spoofed)
    assert statuses == [201] * CLIENT_REQUESTS + [429] * 2


async def test_forwarded_for_from_a_trusted_proxy_names_the_client(behind_proxy):
    one = ["203.0.113.50"] * (CLIENT_REQUESTS + 1)
    assert await create_sessions(behind_proxy, len(one), peer=PROXY, forwarded=one) == [201] * CLIENT_REQUESTS + [429]
    # The same proxy's other clients still pass; so does the proxy's own traffic.
    assert await create_sessions(behind_proxy, 2, peer=PROXY, forwarded=["203.0.113.51"] * 2) == [201, 201]
    assert await create_sessions(behind_proxy, 1, peer=PROXY) == [201]
    # Hops left of the first untrusted one were written by the client: a forged one changes nothing.
    forged = ["192.0.2.99, 203.0.113.50"]
    assert await create_sessions(behind_proxy, 1, peer=PROXY, forwarded=forged) == [429]
    # Through two trusted proxies (the inner one added the outer one's address last).
    chained = ["203.0.113.50, " + OTHER_PROXY]
    assert await create_sessions(behind_proxy, 1, peer=PROXY, forwarded=chained) == [429]


# --- the limiter itself, against the real Redis ----------------------------------------------------------


class Clock:
    """An injected clock (seconds, as time.time): tests move time without sleeping."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def limiter_redis(redis_url) -> AsyncIterator[tuple[object, str]]:
    client, prefix = connect(redis_url), unique_prefix()
    try:
        yield client, prefix
    finally:
        await close_client(client)
        delete_prefix(redis_url, prefix)


async def allowed(limiter: RateLimiter, count: int, **who: object) -> list[bool]:
    return [(await limiter.check(tenant="t", client="c", turn=True, **who)).allowed for _ in range(count)]


async def test_no_burst_fits_across_a_window_edge(limiter_redis):
    client, prefix = limiter_redis
    start = 1_800_000_000.0  # a whole minute: a fixed one-minute window would end at start + 60
    clock = Clock(start + 59.9)
    limiter = RateLimiter(client, prefix=prefix, limits=(Limit("session", "turns", 10),), clock=clock)
    assert await allowed(limiter, 10, session="s") == [True] * 10  # the whole limit at the end of a window
    clock.now = start + 60.1  # a fixed window would allow 10 more here, 20 within 0.2 s
    refused = await limiter.check(tenant="t", client="c", session="s", turn=True)
    assert not refused.allowed and refused.retry_after_s == 6  # one turn per 6 s; 0.2 s of it has passed
    assert refused.reset_s == 60  # 59.8 s until the full burst is back
    clock.now = start + 59.9 + 30  # half a minute refills half the limit, no more
    assert await allowed(limiter, 6, session="s") == [True] * 5 + [False]
    clock.now = start + 59.9 + 30 + 60  # a quiet minute refills the whole burst, not more
    assert await allowed(limiter, 11, session="s") == [True] * 10 + [False]


async def test_a_refused_request_uses_up_none_of_the_other_limits(limiter_redis):
    client, prefix = limiter_redis
    limits = (Limit("tenant", "turns", 5), Limit("session", "turns", 2))
    limiter = RateLimiter(client, prefix=prefix, limits=limits, clock=Clock(1_800_000_000.0))
    assert await allowed(limiter, 12, session="s1") == [True] * 2 + [False] * 10
    assert await allowed(limiter, 3, session="s2") == [True, True, False]
    last = await limiter.check(tenant="t", client="c", session="s3", turn=True)
    assert last.allowed and last.remaining == 0 and last.limit.scope == "tenant"  # 5 charged: 2 + 2 + this one
    over = await limiter.check(tenant="t", client="c", session="s3", turn=True)
    assert not over.allowed and over.limit == limits[0] and over.retry_after_s == 12
    other_tenant = await limiter.check(tenant="u", client="c", session="s1", turn=True)
    assert other_tenant.allowed


async def test_on_redis_time_counts_down_and_keys_expire_when_refilled(limiter_redis):
    client, prefix = limiter_redis
    limiter = RateLimiter(client, prefix=prefix, limits=(Limit("client", "requests", 3),))  # Redis's own clock
    verdicts = [await limiter.check(tenant="t", client="192.0.2.1") for _ in range(4)]
    assert [(v.allowed, v.remaining) for v in verdicts] == [(True, 2), (True, 1), (True, 0), (False, 0)]
    assert 1 <= verdicts[3].retry_after_s <= 20 and verdicts[3].headers()["X-RateLimit-Scope"] == "client-requests"
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
    assert keys == [f"{prefix}:{{rl:t}}:client:192.0.2.1:requests"]
    assert 0 < await client.pttl(keys[0]) <= 60_000  # gone once the limit is full again


async def test_zero_disables_a_limit_and_redis_down_is_store_unavailable(limiter_redis):
    client, prefix = limiter_redis
    limiter = RateLimiter(client, prefix=prefix, limits=(Limit("tenant", "requests", 0), Limit("session", "turns", 4)))
    assert await limiter.check(tenant="t", client="c") is None  # requests: off; turns: not a turn
    assert await limiter.check(tenant="t", client="c", turn=True) is None  # a turn with no session
    with pytest.raises(ValueError, match="per minute"):
        RateLimiter(client, prefix=prefix, limits=(Limit("tenant", "turns", -1),))

    down = connect("redis://127.0.0.1:1/0", socket_timeout_s=0.5)
    try:
        with pytest.raises(StoreUnavailable):
            await RateLimiter(down, prefix=prefix, limits=(Limit("tenant", "requests", 5),)).check(tenant="t", client="c")
    finally:
        await down.aclose()
