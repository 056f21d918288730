"""Sessions stored in another format version, written straight into Redis as that version stored them: an older
one is migrated on read (one registered step per version, written back), one no step leads from and one from a
newer Parley are refused with SessionVersionUnsupported, never read as "not found"."""

import json

import pytest

from app.store.base import SessionVersionUnsupported
from app.store.redis import RedisSessionStore
from app.store.schema import MIGRATIONS, SCHEMA_VERSION, StoredSession
from tests.server import write_session

TENANT = "acme"
HISTORY = [{"role": "user", "text": "my lamp broke", "turn": 1}, {"role": "assistant", "text": "sorry!", "turn": 1}]


def key(prefix: str, session_id: str, part: str) -> str:
    return f"{prefix}:{{{TENANT}:{session_id}}}:{part}"


def v2_to_v3(session: StoredSession) -> StoredSession:
    """A made-up format change: the slot `product` renamed `item`, and history entries say who spoke as `speaker`."""
    slots = dict(session.state["slots"])
    slots["item"] = slots.pop("product")
    history = [{"speaker": e["role"], **{k: v for k, v in e.items() if k != "role"}} for e in session.history]
    return StoredSession({**session.state, "slots": slots}, session.metadata, history)


async def test_a_session_from_before_the_schema_field_is_migrated_and_written_back(
    redis_url, redis_client, store_prefix
):
    store = RedisSessionStore(redis_client, prefix=store_prefix)
    sid = write_session(redis_url, store_prefix, tenant=TENANT, state={"slots": {"product": "lamp"}},
                        history=HISTORY, schema=None)
    got = await store.get(TENANT, sid, with_history=False)
    assert (got.turns, got.state, got.metadata, got.history) == (1, {"slots": {"product": "lamp"}}, {"channel": "web"},
                                                                  [])
    assert await redis_client.hget(key(store_prefix, sid, "meta"), "schema") == str(SCHEMA_VERSION)
    assert 0 < await redis_client.pttl(key(store_prefix, sid, "state"))  # written back with the session TTL
    assert (await store.get(TENANT, sid)).history == HISTORY
    async with store.lock(TENANT, sid) as lock:  # and it takes turns as any session does
        assert await store.commit_turn(lock, expected_turns=1, state={"slots": {}}, entries=[]) == 2


async def test_each_registered_step_runs_in_order(redis_url, redis_client, store_prefix):
    store = RedisSessionStore(redis_client, prefix=store_prefix, schema=3, migrations={**MIGRATIONS, 2: v2_to_v3})
    sid = write_session(redis_url, store_prefix, tenant=TENANT, state={"slots": {"product": "lamp"}, "turns": 1},
                        history=HISTORY, schema=None)
    got = await store.get(TENANT, sid)
    assert got.state == {"slots": {"item": "lamp"}, "turns": 1}
    assert [e["speaker"] for e in got.history] == ["user", "assistant"] and "role" not in got.history[0]
    stored = await redis_client.lrange(key(store_prefix, sid, "history"), 0, -1)
    assert [json.loads(e) for e in stored] == got.history  # written back: the next read needs no step
    assert json.loads(await redis_client.get(key(store_prefix, sid, "state"))) == got.state
    assert await redis_client.hget(key(store_prefix, sid, "meta"), "schema") == "3"
    assert await store.get(TENANT, sid) == got


@pytest.mark.parametrize(("schema", "found", "older"), [(None, 1, True), ("4", 4, False)])
async def test_a_session_no_step_reads_is_refused_and_left_as_it_was(
    redis_url, redis_client, store_prefix, schema, found, older
):
    # This Parley reads v3 and migrates v2 sessions, no longer v1; a v4 one a newer Parley wrote.
    store = RedisSessionStore(redis_client, prefix=store_prefix, schema=3, migrations={2: v2_to_v3})
    sid = write_session(redis_url, store_prefix, tenant=TENANT, state={"slots": {"product": "lamp"}},
                        history=HISTORY, schema=schema)
    before = {part: await redis_client.dump(key(store_prefix, sid, part)) for part in ("meta", "state", "history")}
    for with_history in (True, False):
        with pytest.raises(SessionVersionUnsupported, match=f"v{found} by {'an older' if older else 'a newer'}"):
            await store.get(TENANT, sid, with_history=with_history)
    assert {part: await redis_client.dump(key(store_prefix, sid, part)) for part in before} == before
    await store.delete(TENANT, sid)  # a client can still delete it
    assert not await redis_client.exists(key(store_prefix, sid, "meta"))
