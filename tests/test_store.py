"""The SessionStore contract on every implementation: the in-memory store, and Redis standalone and a
3-primary Cluster (each contract test runs on all three): atomic commits, locking, idempotency, tenants.
Then Redis only: TTLs and keys as Redis holds them, outages, the embedded server."""

import asyncio
import os
import random
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.store.memory import InMemorySessionStore
from app.store.base import (
    IdempotentReply,
    SessionBusy,
    SessionLock,
    SessionNotFound,
    SessionStore,
    StoreUnavailable,
    TurnConflict,
)
from app.store.embedded import EmbeddedRedis
from app.store.redis import RedisSessionStore, close_client, connect
from tests.clock import ManualClock
from tests.server import delete_prefix, unique_prefix

TENANT = "acme"


@pytest.fixture(params=["standalone", "cluster"])
def store_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """The contract holds on both: each MULTI and Lua script touches one session's hash tag, so one slot."""
    return redis_url if request.param == "standalone" else request.getfixturevalue("redis_cluster_url")


@dataclass(frozen=True)
class Backend:
    """One SessionStore implementation under test."""

    make: Callable[..., SessionStore]  # a store on this backend's data, with RedisSessionStore's options
    # Let a session's lock run out as its lock_ttl_ms would (Redis deletes the key; memory moves its clock).
    expire_lock: Callable[[str, int], Awaitable[None]]  # (session id, lock_ttl_ms)


@pytest.fixture(params=["memory", "standalone", "cluster"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        clock = ManualClock()

        async def advance_past(session_id: str, lock_ttl_ms: int) -> None:
            clock.advance(lock_ttl_ms / 1000)

        yield Backend(lambda **options: InMemorySessionStore(clock=clock, **options), advance_past)
        return
    url = request.getfixturevalue("redis_url" if request.param == "standalone" else "redis_cluster_url")
    client, prefix = connect(url), unique_prefix()

    async def delete_lock(session_id: str, lock_ttl_ms: int) -> None:
        assert await client.delete(key(prefix, session_id, "lock")) == 1

    try:
        yield Backend(lambda **options: RedisSessionStore(client, prefix=prefix, **options), delete_lock)
    finally:
        await close_client(client)
        delete_prefix(url, prefix)


@pytest.fixture
def store(backend: Backend) -> SessionStore:
    """The contract tests' store (in memory, standalone Redis, Cluster)."""
    return backend.make()


@pytest.fixture
def redis_store(redis_client, store_prefix: str) -> RedisSessionStore:
    """The Redis-only tests' store (standalone, Cluster), on the `redis_client` they inspect."""
    return RedisSessionStore(redis_client, prefix=store_prefix)


def key(prefix: str, session_id: str, part: str, tenant: str = TENANT) -> str:
    return f"{prefix}:{{{tenant}:{session_id}}}:{part}"


async def prefix_keys(client, prefix: str) -> set[str]:
    return {k async for k in client.scan_iter(match=f"{prefix}:*", count=500)}


async def one_turn(store, session_id: str, n: int, *, idem: IdempotentReply | None = None) -> int:
    async with store.lock(TENANT, session_id) as lock:
        record = await store.get(TENANT, session_id)
        return await store.commit_turn(
            lock,
            expected_turns=record.turns,
            state={"n": n},
            entries=[{"role": "user", "text": f"u{n}"}, {"role": "assistant", "text": f"a{n}"}],
            idempotency=idem,
        )


# --- the contract: every implementation -------------------------------------------------------------------


async def test_create_get_delete(store):
    created = await store.create(tenant=TENANT, state={"intent": None}, metadata={"channel": "web"})
    assert len(created.id) == 32 and created.turns == 0 and created.created_at.endswith("Z")
    got = await store.get(TENANT, created.id)
    assert got == created
    assert (await store.get(TENANT, created.id, with_history=False)).state == {"intent": None}
    await store.delete(TENANT, created.id)
    with pytest.raises(SessionNotFound):
        await store.get(TENANT, created.id)
    with pytest.raises(SessionNotFound):
        await store.delete(TENANT, created.id)


async def test_sessions_are_per_tenant(store):
    created = await store.create(tenant=TENANT, state={})
    with pytest.raises(SessionNotFound):
        await store.get("other", created.id)
    with pytest.raises(SessionNotFound):
        await store.delete("other", created.id)
    with pytest.raises(SessionNotFound):
        async with store.lock("other", created.id):
            pass
    with pytest.raises(ValueError):
        await store.create(tenant="a:b}", state={})
    assert (await store.get(TENANT, created.id)).id == created.id  # the other tenant's attempts changed nothing


MALFORMED_IDS = ["../../etc/passwd", "A" * 32, "é" * 32, "", "0" * 31 + "\n", "*", "{x}" + "0" * 29]


@pytest.mark.parametrize("session_id", [secrets.token_hex(16), *MALFORMED_IDS])
async def test_unknown_and_malformed_ids(store, session_id):
    with pytest.raises(SessionNotFound):
        await store.get(TENANT, session_id)
    with pytest.raises(SessionNotFound):
        await store.delete(TENANT, session_id)
    with pytest.raises(SessionNotFound):
        async with store.lock(TENANT, session_id):
            pass
    if re.fullmatch("[0-9a-f]{32}", session_id):  # well-formed but unknown
        assert await store.get_idempotent(TENANT, session_id, "k") is None
    else:
        with pytest.raises(SessionNotFound):
            await store.get_idempotent(TENANT, session_id, "k")


async def test_malformed_tenant_is_not_found(store):
    created = await store.create(tenant=TENANT, state={})
    for tenant in ("acme}", "ac:me", "", "ü" * 3, "x" * 65):
        with pytest.raises(SessionNotFound):
            await store.get(tenant, created.id)


async def test_commit_writes_state_history_and_counter_together(store):
    created = await store.create(tenant=TENANT, state={"slots": {}})
    entries = [{"role": "user", "text": "hé ✓", "turn": 1}, {"role": "assistant", "text": "ok", "turn": 1}]
    async with store.lock(TENANT, created.id) as lock:
        turns = await store.commit_turn(lock, expected_turns=0, state={"slots": {"a": 1}}, entries=entries)
    assert turns == 1
    got = await store.get(TENANT, created.id)
    assert (got.turns, got.state, got.history) == (1, {"slots": {"a": 1}}, entries)


async def test_stored_values_are_copies(store):
    state = {"slots": {"a": 1}}
    created = await store.create(tenant=TENANT, state=state)
    state["slots"]["a"] = 2
    got = await store.get(TENANT, created.id)
    got.state["slots"]["a"] = 3
    assert (await store.get(TENANT, created.id)).state == {"slots": {"a": 1}}


async def test_stale_expected_turns_conflicts_and_writes_nothing(store):
    created = await store.create(tenant=TENANT, state={"v": 0})
    await one_turn(store, created.id, 1)
    before = await store.get(TENANT, created.id)
    async with store.lock(TENANT, created.id) as lock:
        with pytest.raises(TurnConflict, match="expected 0, found 1"):
            await store.commit_turn(lock, expected_turns=0, state={"v": 99}, entries=[{"x": 1}])
    assert await store.get(TENANT, created.id) == before


async def test_lost_lock_conflicts_and_writes_nothing(store):
    created = await store.create(tenant=TENANT, state={"v": 0})
    async with store.lock(TENANT, created.id) as lock:
        someone_else = SessionLock(tenant=TENANT, session_id=created.id, token=secrets.token_hex(16))
        with pytest.raises(TurnConflict, match="lock lost"):
            await store.commit_turn(someone_else, expected_turns=0, state={"v": 1}, entries=[{"x": 1}])
    with pytest.raises(TurnConflict, match="lock lost"):  # released: no lock held at all
        await store.commit_turn(lock, expected_turns=0, state={"v": 1}, entries=[{"x": 1}])
    got = await store.get(TENANT, created.id)
    assert (got.turns, got.state, got.history) == (0, {"v": 0}, [])


async def test_commit_after_delete_writes_nothing(store):
    created = await store.create(tenant=TENANT, state={"v": 0})
    async with store.lock(TENANT, created.id) as lock:
        await store.delete(TENANT, created.id)
        with pytest.raises(TurnConflict):  # the delete took the lock with it
            await store.commit_turn(lock, expected_turns=0, state={"v": 1}, entries=[{"x": 1}])
    with pytest.raises(SessionNotFound):
        await store.get(TENANT, created.id)


async def test_failed_turn_changes_nothing_and_releases_lock(backend):
    store = backend.make(lock_wait_ms=0)
    created = await store.create(tenant=TENANT, state={"v": 0})
    await one_turn(store, created.id, 1)
    before = await store.get(TENANT, created.id)
    with pytest.raises(RuntimeError, match="model crashed"):
        async with store.lock(TENANT, created.id):
            await store.get(TENANT, created.id)
            raise RuntimeError("model crashed")
    assert await store.get(TENANT, created.id) == before
    async with store.lock(TENANT, created.id):  # free again at once: this store does not wait
        pass


async def test_concurrent_turns_on_one_session_are_serialised(store):
    created = await store.create(tenant=TENANT, state={"count": 0})
    inside, max_inside, order = 0, 0, []

    async def turn(i: int) -> None:
        nonlocal inside, max_inside
        async with store.lock(TENANT, created.id) as lock:
            inside += 1
            max_inside = max(max_inside, inside)
            record = await store.get(TENANT, created.id)
            for _ in range(random.randint(0, 3)):  # let the others run (and queue) in between
                await asyncio.sleep(0)
            new = await store.commit_turn(
                lock,
                expected_turns=record.turns,
                state={"count": record.state["count"] + 1},
                entries=[{"task": i, "turn": record.turns + 1}],
            )
            order.append(i)
            inside -= 1
            assert new == record.turns + 1

    await asyncio.gather(*(turn(i) for i in range(20)))
    got = await store.get(TENANT, created.id)
    assert max_inside == 1
    assert (got.turns, got.state["count"]) == (20, 20)
    assert [e["task"] for e in got.history] == order
    assert sorted(order) == list(range(20))
    assert [e["turn"] for e in got.history] == list(range(1, 21))


async def test_different_sessions_lock_in_parallel(backend):
    store = backend.make(lock_wait_ms=0)
    a = await store.create(tenant=TENANT, state={})
    b = await store.create(tenant=TENANT, state={})
    async with store.lock(TENANT, a.id) as lock_a, store.lock(TENANT, b.id) as lock_b:
        assert lock_a.token != lock_b.token
        with pytest.raises(SessionBusy):  # while the same session's lock is exclusive
            async with store.lock(TENANT, a.id):
                pass
        assert await store.commit_turn(lock_b, expected_turns=0, state={"b": 1}, entries=[]) == 1
        assert await store.commit_turn(lock_a, expected_turns=0, state={"a": 1}, entries=[]) == 1


async def test_expired_lock_can_be_taken_over_and_is_not_released_by_old_owner(backend):
    store = backend.make(lock_ttl_ms=1000, lock_wait_ms=0)
    created = await store.create(tenant=TENANT, state={"v": 0})
    second_cm = store.lock(TENANT, created.id)
    async with store.lock(TENANT, created.id) as first:
        await backend.expire_lock(created.id, 1000)  # the first owner stalls past lock_ttl_ms
        second = await second_cm.__aenter__()
        assert second.token != first.token
    with pytest.raises(SessionBusy):  # the first owner's release left the second's lock in place
        async with store.lock(TENANT, created.id):
            pass
    with pytest.raises(TurnConflict):
        await store.commit_turn(first, expected_turns=0, state={"v": 1}, entries=[])
    assert await store.commit_turn(second, expected_turns=0, state={"v": 2}, entries=[]) == 1
    await second_cm.__aexit__(None, None, None)
    assert (await store.get(TENANT, created.id)).state == {"v": 2}


async def test_session_busy_after_lock_wait(backend):
    store = backend.make(lock_wait_ms=20)
    created = await store.create(tenant=TENANT, state={})
    async with store.lock(TENANT, created.id):
        with pytest.raises(SessionBusy) as info:
            async with store.lock(TENANT, created.id):
                pass
    assert 0 < info.value.retry_after_s <= 1.0
    async with store.lock(TENANT, created.id):  # released: free again
        pass


async def test_waiting_turn_gets_the_lock_when_it_is_released(store):
    created = await store.create(tenant=TENANT, state={"v": 0})
    held, release = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with store.lock(TENANT, created.id) as lock:
            held.set()
            await release.wait()
            await store.commit_turn(lock, expected_turns=0, state={"v": 1}, entries=[])

    async def second() -> int:
        await held.wait()
        async with store.lock(TENANT, created.id) as lock:  # waits (lock_wait_ms 10 s) for `first`
            record = await store.get(TENANT, created.id)
            return await store.commit_turn(lock, expected_turns=record.turns, state={"v": 2}, entries=[])

    tasks = asyncio.gather(first(), second())
    await held.wait()
    release.set()
    assert (await tasks)[1] == 2  # second committed on top of first's turn
    assert (await store.get(TENANT, created.id)).state == {"v": 2}


async def test_history_window_keeps_last_entries(backend):
    store = backend.make(history_max=5)
    created = await store.create(tenant=TENANT, state={})
    for n in range(1, 5):
        await one_turn(store, created.id, n)
    got = await store.get(TENANT, created.id)
    assert got.turns == 4
    assert [e["text"] for e in got.history] == ["a2", "u3", "a3", "u4", "a4"]


async def test_idempotency_record_round_trip(store):
    created = await store.create(tenant=TENANT, state={})
    other = await store.create(tenant=TENANT, state={})
    reply = IdempotentReply(key="retry-1", fingerprint="sha256:abc", response={"turn": 1, "reply": "hé"})
    assert await one_turn(store, created.id, 1, idem=reply) == 1
    assert await store.get_idempotent(TENANT, created.id, "retry-1") == reply
    assert await store.get_idempotent(TENANT, created.id, "retry-2") is None
    assert await store.get_idempotent(TENANT, other.id, "retry-1") is None
    assert await store.get_idempotent("other", created.id, "retry-1") is None


async def test_delete_drops_idempotency_records(store):
    created = await store.create(tenant=TENANT, state={})
    await one_turn(store, created.id, 1, idem=IdempotentReply(key="k1", fingerprint="f", response={}))
    await store.delete(TENANT, created.id)
    assert await store.get_idempotent(TENANT, created.id, "k1") is None


async def test_ping(store):
    assert await store.ping() is True


# --- Redis only: keys, TTLs as Redis holds them, outages ------------------------------------------------


@pytest.mark.parametrize("session_id", [secrets.token_hex(16), *MALFORMED_IDS])
async def test_lookups_of_unknown_ids_write_no_key(redis_store, redis_client, store_prefix, session_id):
    for attempt in (redis_store.get(TENANT, session_id), redis_store.delete(TENANT, session_id)):
        with pytest.raises(SessionNotFound):
            await attempt
    with pytest.raises(SessionNotFound):
        async with redis_store.lock(TENANT, session_id):
            pass
    assert await prefix_keys(redis_client, store_prefix) == set()


async def test_ttl_on_every_key_and_refreshed_by_get(redis_client, store_prefix):
    redis_store = RedisSessionStore(
        redis_client, prefix=store_prefix, ttl_s=100, idempotency_ttl_s=50, lock_ttl_ms=20_000
    )
    created = await redis_store.create(tenant=TENANT, state={})
    idem = IdempotentReply(key="k1", fingerprint="f", response={"turn": 1})
    async with redis_store.lock(TENANT, created.id):
        assert 0 < await redis_client.pttl(key(store_prefix, created.id, "lock")) <= 20_000
    await one_turn(redis_store, created.id, 1, idem=idem)
    keys = await prefix_keys(redis_client, store_prefix)
    assert len(keys) == 5  # meta, state, history, idems, one idem record
    for k in keys:
        limit = 50_000 if ":idem:" in k else 100_000
        assert 0 < await redis_client.pttl(k) <= limit, k
    session_keys = [key(store_prefix, created.id, p) for p in ("meta", "state", "history", "idems")]
    for k in session_keys:
        await redis_client.pexpire(k, 5_000)
    await redis_store.get(TENANT, created.id)
    for k in session_keys:
        assert await redis_client.pttl(k) > 90_000, k


async def test_delete_removes_every_key(redis_store, redis_client, store_prefix):
    created = await redis_store.create(tenant=TENANT, state={})
    other = await redis_store.create(tenant=TENANT, state={})
    for n in (1, 2):
        await one_turn(redis_store, created.id, n, idem=IdempotentReply(key=f"k{n}", fingerprint="f", response={}))
    async with redis_store.lock(TENANT, created.id):
        assert len(await prefix_keys(redis_client, store_prefix)) == 2 + 7  # other's meta+state
        await redis_store.delete(TENANT, created.id)
    remaining = await prefix_keys(redis_client, store_prefix)
    assert remaining == {key(store_prefix, other.id, "meta"), key(store_prefix, other.id, "state")}
    assert await redis_store.get_idempotent(TENANT, created.id, "k1") is None


async def test_embedded_redis_serves_a_store_and_persists_on_close(tmp_path: Path, redis_store, store_prefix):
    server = EmbeddedRedis(tmp_path)
    try:
        assert server.url.startswith("unix://") and os.path.exists(server.socket_path)
        embedded = RedisSessionStore(connect(server.url), prefix=store_prefix)
        assert await embedded.ping()
        created = await embedded.create(tenant=TENANT, state={"v": 0})
        assert await one_turn(embedded, created.id, 1) == 1
        with pytest.raises(SessionNotFound):  # same prefix, but not the server behind `redis_store`
            await redis_store.get(TENANT, created.id)
        await embedded.close()
    finally:
        server.close()
    assert not os.path.exists(server.socket_path)
    assert (tmp_path / "redis.db").exists()
    restarted = EmbeddedRedis(tmp_path)
    try:
        again = RedisSessionStore(connect(restarted.url), prefix=store_prefix)
        assert (await again.get(TENANT, created.id)).turns == 1
        await again.close()
    finally:
        restarted.close()


async def test_unreachable_redis_raises_store_unavailable(redis_store):
    created = await redis_store.create(tenant=TENANT, state={})
    down = RedisSessionStore(connect("redis://127.0.0.1:1/0", socket_timeout_s=0.5))
    assert await down.ping() is False
    with pytest.raises(StoreUnavailable):
        await down.create(tenant=TENANT, state={})
    with pytest.raises(StoreUnavailable):
        await down.get(TENANT, created.id)
    with pytest.raises(StoreUnavailable):
        async with down.lock(TENANT, created.id):
            pass
    with pytest.raises(StoreUnavailable):
        await down.get_idempotent(TENANT, created.id, "k")
    with pytest.raises(StoreUnavailable):
        lock = SessionLock(tenant=TENANT, session_id=created.id, token="t")
        await down.commit_turn(lock, expected_turns=0, state={}, entries=[])
    await down.close()
