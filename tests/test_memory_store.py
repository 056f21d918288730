"""What the in-memory store does on its own clock (tests/test_store.py holds the contract it shares with Redis):
sessions expire when idle and every read or commit refreshes them, idempotency records keep their own TTL, a
lock runs out after lock_ttl_ms. Time moves by hand; nothing sleeps."""

import pytest

from app.store.memory import InMemorySessionStore
from app.store.base import IdempotentReply, SessionBusy, SessionNotFound
from tests.clock import ManualClock

TENANT = "acme"


async def commit(store: InMemorySessionStore, session_id: str, *, idem: IdempotentReply | None = None) -> int:
    async with store.lock(TENANT, session_id) as lock:
        record = await store.get(TENANT, session_id)
        return await store.commit_turn(lock, expected_turns=record.turns, state={}, entries=[], idempotency=idem)


async def test_idle_sessions_expire_and_reads_and_commits_refresh_them():
    clock = ManualClock()
    store = InMemorySessionStore(ttl_s=100, clock=clock)
    read, committed, idle = [await store.create(tenant=TENANT, state={}) for _ in range(3)]
    clock.advance(90)
    await store.get(TENANT, read.id)
    await commit(store, committed.id)
    clock.advance(20)  # 110 s after create: 20 s after the last touch
    assert (await store.get(TENANT, read.id)).turns == 0
    assert (await store.get(TENANT, committed.id)).turns == 1
    for attempt in (store.get(TENANT, idle.id), store.delete(TENANT, idle.id)):
        with pytest.raises(SessionNotFound):
            await attempt
    with pytest.raises(SessionNotFound):
        async with store.lock(TENANT, idle.id):
            pass


async def test_idempotency_records_keep_their_own_ttl():
    clock = ManualClock()
    store = InMemorySessionStore(ttl_s=100, idempotency_ttl_s=30, clock=clock)
    created = await store.create(tenant=TENANT, state={})
    reply = IdempotentReply(key="k", fingerprint="f", response={"turn": 1})
    await commit(store, created.id, idem=reply)
    clock.advance(29)
    assert await store.get_idempotent(TENANT, created.id, "k") == reply
    clock.advance(2)
    assert await store.get_idempotent(TENANT, created.id, "k") is None
    assert (await store.get(TENANT, created.id)).turns == 1  # the session itself lives on


async def test_expired_sessions_are_dropped_on_create():
    clock = ManualClock()
    store = InMemorySessionStore(ttl_s=10, idempotency_ttl_s=10, clock=clock)
    old = await store.create(tenant=TENANT, state={})
    await commit(store, old.id, idem=IdempotentReply(key="k", fingerprint="f", response={}))
    clock.advance(11)
    await store.create(tenant=TENANT, state={})
    assert (TENANT, old.id) not in store._sessions and (TENANT, old.id) not in store._idems


async def test_a_lock_runs_out_after_lock_ttl():
    clock = ManualClock()
    store = InMemorySessionStore(lock_ttl_ms=5000, lock_wait_ms=0, clock=clock)
    created = await store.create(tenant=TENANT, state={})
    async with store.lock(TENANT, created.id):
        clock.advance(4.9)
        with pytest.raises(SessionBusy) as busy:
            async with store.lock(TENANT, created.id):
                pass
        assert busy.value.retry_after_s == pytest.approx(0.1)  # the holder's 0.1 s left (at least 0.1 s)
        clock.advance(0.1)
        async with store.lock(TENANT, created.id) as taken_over:
            assert await store.commit_turn(taken_over, expected_turns=0, state={"v": 1}, entries=[]) == 1


def test_options_are_checked():
    for options in ({"ttl_s": 0}, {"history_max": 0}, {"lock_ttl_ms": 0}, {"lock_wait_ms": -1},
                    {"idempotency_ttl_s": 0}):
        with pytest.raises(ValueError):
            InMemorySessionStore(**options)
