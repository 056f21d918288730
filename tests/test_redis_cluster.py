"""Parley on a 3-primary Redis Cluster and behind a Sentinel, both started from the redis-server binary.

The store's contract tests run on the Cluster too (tests/test_store.py is parametrised over it); here:
one session's keys share one slot while sessions spread over the primaries, the rate limiter's script
runs there, API turns work end to end on Cluster and Sentinel URLs, and `delete_prefix` empties a Cluster.
"""

from collections.abc import AsyncIterator

import httpx
import pytest

from app.config import Settings
from app.security.ratelimit import Limit, RateLimiter
from app.store.base import IdempotentReply
from app.store.redis import RedisSessionStore, close_client, connect
from tests.api.inprocess import in_process_client
from tests.factories import tiny_causal_lm
from tests.server import delete_prefix, redis_sentinel, sync_client, unique_prefix

TENANT = "acme"


async def test_keys_of_a_session_share_one_slot_and_sessions_spread(redis_cluster_url):
    client, prefix = connect(redis_cluster_url), unique_prefix()
    store = RedisSessionStore(client, prefix=prefix)
    try:
        ids = [(await store.create(tenant=TENANT, state={})).id for _ in range(12)]
        async with store.lock(TENANT, ids[0]) as lock:
            reply = IdempotentReply(key="k", fingerprint="f", response={})
            await store.commit_turn(lock, expected_turns=0, state={"v": 1}, entries=[{"x": 1}], idempotency=reply)
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=500)]
        slots_of = {sid: {await client.cluster_keyslot(k) for k in keys if sid in k} for sid in ids}
        assert len([k for k in keys if ids[0] in k]) == 5  # meta, state, history, idems, the idem record
        assert all(len(slots) == 1 for slots in slots_of.values()), slots_of
        # Cluster-wide SCAN found every session; their slots lie on more than one primary.
        nodes = {client.get_node_from_key(k).name for k in keys}
        assert len(nodes) >= 2, nodes
    finally:
        await close_client(client)
        delete_prefix(redis_cluster_url, prefix)
    with sync_client(redis_cluster_url) as check:
        assert list(check.scan_iter(match=f"{prefix}:*")) == []


async def test_rate_limiter_counts_on_a_cluster(redis_cluster_url):
    """One script checks several limits of a request at once: their keys share the tenant's hash tag."""
    client, prefix = connect(redis_cluster_url), unique_prefix()
    limiter = RateLimiter(client, prefix=prefix, limits=(Limit("tenant", "turns", 3), Limit("session", "turns", 2),
                                                         Limit("client", "requests", 10)))
    try:
        verdicts = [await limiter.check(tenant=tenant, client="192.0.2.1", session=sid, turn=True)
                    for tenant, sid in ((TENANT, "s1"), (TENANT, "s1"), (TENANT, "s1"), (TENANT, "s2"),
                                        (TENANT, "s3"), ("globex", "s1"))]
        assert [(v.allowed, v.limit.scope) for v in verdicts] == [
            (True, "session"), (True, "session"), (False, "session"), (True, "tenant"), (False, "tenant"),
            (True, "session")]
        assert 1 <= verdicts[4].retry_after_s <= 20
        # A refused request wrote nothing: acme's tenant, client, s1 and s2 limits and globex's three.
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=500)]
        assert len(keys) == 7 and len({await client.cluster_keyslot(k) for k in keys if TENANT in k}) == 1
    finally:
        await close_client(client)
        delete_prefix(redis_cluster_url, prefix)


@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tiny_causal_lm(tmp_path_factory.mktemp("tiny-decoder")))


@pytest.fixture(scope="module", params=["cluster", "sentinel"])
def backend_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    if request.param == "cluster":
        yield request.getfixturevalue("redis_cluster_url")
    else:
        with redis_sentinel(tmp_path_factory.mktemp("sentinel")) as url:
            yield url


@pytest.fixture(scope="module")
async def client(backend_url: str, tiny_decoder: str, tmp_path_factory) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        redis_url=backend_url, redis_prefix=unique_prefix(), decoder=tiny_decoder, decoder_max_new_tokens=4,
        data_dir=tmp_path_factory.mktemp("data"), lock_wait_ms=2000, turn_rate_limit_per_min=3,
    )
    async with in_process_client(settings) as http:
        yield http


async def test_turns_through_the_api(client: httpx.AsyncClient):
    assert (await client.get("/readyz")).json()["redis"] is True
    sid = (await client.post("/v1/sessions")).json()["id"]
    url = f"/v1/sessions/{sid}/turns"
    first = await client.post(url, json={"text": "My lamp arrived broken"}, headers={"Idempotency-Key": "t1"})
    assert first.status_code == 200, first.text
    second = await client.post(url, json={"text": "It's A7Q-4412"})
    assert second.json()["turn"] == 2
    slots = second.json()["state"]["slots"]
    assert (slots["product"], slots["order_id"]) == ("lamp", "A7Q-4412")
    replay = await client.post(url, json={"text": "My lamp arrived broken"}, headers={"Idempotency-Key": "t1"})
    assert replay.json()["replayed"] is True and replay.json()["turn"] == 1
    limited = await client.post(url, json={"text": "hello"})  # the fourth turn request this minute: over 3
    assert limited.status_code == 429 and "retry-after" in limited.headers
    detail = (await client.get(f"/v1/sessions/{sid}")).json()
    assert [(h["role"], h["turn"]) for h in detail["history"]] == [
        ("user", 1), ("assistant", 1), ("user", 2), ("assistant", 2)]
    assert detail["state"]["turns"] == 2
    assert (await client.delete(f"/v1/sessions/{sid}")).status_code == 204
    assert (await client.get(f"/v1/sessions/{sid}")).status_code == 404
