"""Session state in Redis: the `redis.asyncio` implementation of `SessionStore` (app/store/base.py).

Key layout (every key of a session shares the Redis Cluster hash tag ``{tenant:sid}``, so one
Lua script can touch them all, standalone or Cluster):

    {prefix}:{tenant:sid}:meta         hash  created_at, metadata (JSON), turns (store-owned counter),
                                             schema (format version; absent before version 2)
    {prefix}:{tenant:sid}:state        string  JSON dialogue state
    {prefix}:{tenant:sid}:history      list  JSON entries, oldest first, trimmed to history_max
    {prefix}:{tenant:sid}:lock         string  lock token, own expiry (lock_ttl_ms)
    {prefix}:{tenant:sid}:idems        zset  idempotency key names, score = their expiry (epoch ms)
    {prefix}:{tenant:sid}:idem:<sha256(Idempotency-Key)>   string  JSON IdempotentReply

meta/state/history/idems expire after ttl_s, refreshed by every `get` and `commit_turn`;
idempotency records keep their own idempotency_ttl_s. Serialization is JSON only.

A session written by another version of the format is migrated on read, one registered step
(MIGRATIONS) at a time, and written back; one no step leads from is refused (SessionVersionUnsupported).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import redis.asyncio
import redis.exceptions as rex
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.typing import EncodableT, FieldT

from app.store.base import (_LOCK_POLL_MAX_S, _LOCK_POLL_MIN_S, IdempotentReply, SessionLock, SessionNotFound,
                            SessionRecord, StoreUnavailable, TurnConflict, check_ids, check_limits, check_tenant,
                            session_busy, upgrade, utc_now)
from app.store.keys import SessionKeys
from app.store.schema import LEGACY_SCHEMA, MIGRATIONS, SCHEMA_VERSION, Migration, StoredSession
from app.store.url import parse_redis_url

logger = logging.getLogger(__name__)
# What `connect` returns. The Cluster client is no subclass of Redis but has the same commands, pipelines
# and scripts, which is all the store and the rate limiter use.
RedisClient = AsyncRedis | RedisCluster

# Errors that mean "Redis is not there right now" (StoreUnavailable), not "the store has a bug".
_UNAVAILABLE = (rex.ConnectionError, rex.TimeoutError, rex.BusyLoadingError, rex.ReadOnlyError, rex.ClusterDownError)


def _is_unavailable(exc: BaseException) -> bool:
    """Also a Cluster client's "no startup node reachable", which wraps the connection error."""
    return isinstance(exc, _UNAVAILABLE) or (
        isinstance(exc, rex.RedisClusterException) and isinstance(exc.__cause__, _UNAVAILABLE))


# KEYS[1] lock; ARGV token, ttl_ms. Returns 0 when the lock is ours (taken now, or already ours
# after a retried SET), else the holder's remaining PTTL in ms (>= 1).
_ACQUIRE_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 0 end
return math.max(redis.call('PTTL', KEYS[1]), 1)
"""

# KEYS[1] lock; ARGV token. Deletes the lock only if it still holds our token.
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS meta, state, history, lock, idems[, idem]
# ARGV token, expected_turns, state_json, history_max, ttl_ms, now_ms, n_entries, entries...,
#      [idem_json, idem_ttl_ms, idem_expires_at_ms]
# Returns {new_turns} or {-1} lock lost, {-2} session gone, {-3, turns} counter moved.
_COMMIT_LUA = """
if redis.call('GET', KEYS[4]) ~= ARGV[1] then return {-1} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2} end
local turns = tonumber(redis.call('HGET', KEYS[1], 'turns'))
if turns ~= tonumber(ARGV[2]) then return {-3, turns} end
local ttl = ARGV[5]
local n = tonumber(ARGV[7])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ttl)
for i = 8, 7 + n do redis.call('RPUSH', KEYS[3], ARGV[i]) end
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[4]), -1)
local new_turns = redis.call('HINCRBY', KEYS[1], 'turns', 1)
if #KEYS >= 6 then
  redis.call('SET', KEYS[6], ARGV[8 + n], 'PX', ARGV[9 + n])
  redis.call('ZADD', KEYS[5], ARGV[10 + n], KEYS[6])
end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', ARGV[6])
for _, k in ipairs({KEYS[1], KEYS[3], KEYS[5]}) do redis.call('PEXPIRE', k, ttl) end
return {new_turns}
"""

# KEYS meta, state, history; ARGV schema as read ('' when absent), new schema, turns as read, state_json,
#      metadata_json, ttl_ms, n_entries, entries...
# Writes a migrated session back unless it changed since it was read. Returns 1, 0 changed, -1 gone.
_MIGRATE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local schema = redis.call('HGET', KEYS[1], 'schema') or ''
if schema ~= ARGV[1] or redis.call('HGET', KEYS[1], 'turns') ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[6])
redis.call('DEL', KEYS[3])
for i = 8, 7 + tonumber(ARGV[7]) do redis.call('RPUSH', KEYS[3], ARGV[i]) end
redis.call('HSET', KEYS[1], 'schema', ARGV[2], 'metadata', ARGV[5])
for _, k in ipairs({KEYS[1], KEYS[3]}) do redis.call('PEXPIRE', k, ARGV[6]) end
return 1
"""


@contextlib.contextmanager
def redis_errors() -> Iterator[None]:
    """Map "Redis is not there" errors to StoreUnavailable (the caller may retry shortly)."""
    try:
        yield
    except Exception as exc:  # RedisClusterException is no RedisError
        if not _is_unavailable(exc):
            raise
        raise StoreUnavailable(f"redis unavailable: {exc}") from exc


class RedisSessionStore:
    """SessionStore on redis.asyncio; every multi-key write is one MULTI or Lua script."""

    def __init__(
        self, redis: RedisClient, *, prefix: str = "parley", ttl_s: int = 86400, history_max: int = 200,
        lock_ttl_ms: int = 30000, lock_wait_ms: int = 10000, idempotency_ttl_s: int = 86400,
        schema: int = SCHEMA_VERSION, migrations: Mapping[int, Migration] = MIGRATIONS,
    ) -> None:
        if not prefix or any(c in prefix for c in "{}"):
            raise ValueError(f"bad key prefix {prefix!r}")
        check_limits(ttl_s=ttl_s, history_max=history_max, lock_ttl_ms=lock_ttl_ms, lock_wait_ms=lock_wait_ms,
                     idempotency_ttl_s=idempotency_ttl_s)
        self._redis, self._prefix, self._history_max = redis, prefix, history_max
        self._schema, self._migrations = schema, migrations
        self._ttl_ms, self._idem_ttl_ms = ttl_s * 1000, idempotency_ttl_s * 1000
        self._lock_ttl_ms, self._lock_wait_s = lock_ttl_ms, lock_wait_ms / 1000
        self._acquire = redis.register_script(_ACQUIRE_LUA)
        self._release = redis.register_script(_RELEASE_LUA)
        self._commit = redis.register_script(_COMMIT_LUA)
        self._migrate = redis.register_script(_MIGRATE_LUA)

    def _keys(self, tenant: str, session_id: str) -> SessionKeys:
        """Keys of a session; a tenant or id that could not have been issued -> SessionNotFound."""
        check_ids(tenant, session_id)
        return SessionKeys(self._prefix, tenant, session_id)

    async def create(self, *, tenant: str, state: dict, metadata: dict | None = None) -> SessionRecord:
        check_tenant(tenant)
        record = SessionRecord(
            id=secrets.token_hex(16), tenant=tenant,
            created_at=utc_now(),
            metadata=dict(metadata or {}), turns=0, state=state, history=[],
        )
        keys = SessionKeys(self._prefix, tenant, record.id)
        meta: dict[FieldT, EncodableT] = {
            "created_at": record.created_at, "metadata": json.dumps(record.metadata), "turns": 0, "schema": self._schema}
        with redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(keys.meta, mapping=meta)
                pipe.pexpire(keys.meta, self._ttl_ms)
                pipe.set(keys.state, json.dumps(state), px=self._ttl_ms)
                await pipe.execute()
        return record

    async def get(self, tenant: str, session_id: str, *, with_history: bool = True) -> SessionRecord:
        keys = self._keys(tenant, session_id)
        with redis_errors():
            # One MULTI: a consistent snapshot, and the TTL refresh cannot half-apply.
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(keys.meta)
                pipe.get(keys.state)
                if with_history:
                    pipe.lrange(keys.history, 0, -1)
                for key in (keys.meta, keys.state, keys.history, keys.idems):
                    pipe.pexpire(key, self._ttl_ms)
                results = await pipe.execute()
        meta, state = results[0], results[1]
        if not meta or state is None:
            raise SessionNotFound("no such session")
        if int(meta.get("schema", LEGACY_SCHEMA)) != self._schema:
            return await self._migrated(keys, tenant, session_id, with_history=with_history)
        return SessionRecord(
            id=session_id, tenant=tenant, created_at=meta["created_at"],
            metadata=json.loads(meta["metadata"]), turns=int(meta["turns"]), state=json.loads(state),
            history=[json.loads(e) for e in results[2]] if with_history else [],
        )

    async def _migrated(self, keys: SessionKeys, tenant: str, session_id: str, *, with_history: bool) -> SessionRecord:
        """The session read whole, brought to this store's format and written back (atomically, unless it
        changed meanwhile: then it is read again)."""
        with redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(keys.meta)
                pipe.get(keys.state)
                pipe.lrange(keys.history, 0, -1)
                meta, state, history = await pipe.execute()
        if not meta or state is None:
            raise SessionNotFound("no such session")
        stored = StoredSession(json.loads(state), json.loads(meta["metadata"]), [json.loads(e) for e in history])
        found = int(meta.get("schema", LEGACY_SCHEMA))
        session = upgrade(stored, found=found, to=self._schema, migrations=self._migrations)
        entries = [json.dumps(e) for e in session.history]
        args = [meta.get("schema", ""), self._schema, meta["turns"], json.dumps(session.state),
                json.dumps(session.metadata), self._ttl_ms, len(entries), *entries]
        with redis_errors():
            written = await self._migrate(keys=[keys.meta, keys.state, keys.history], args=args)
        if written == -1:
            raise SessionNotFound("no such session")
        if written == 0:  # another worker migrated it or committed a turn meanwhile
            return await self.get(tenant, session_id, with_history=with_history)
        logger.info("migrated session %s from format v%d to v%d", session_id, found, self._schema)
        return SessionRecord(
            id=session_id, tenant=tenant, created_at=meta["created_at"], metadata=session.metadata,
            turns=int(meta["turns"]), state=session.state, history=session.history if with_history else [],
        )

    async def delete(self, tenant: str, session_id: str) -> None:
        keys = self._keys(tenant, session_id)
        with redis_errors():
            idems = await self._redis.zrange(keys.idems, 0, -1)
            # A record added between ZRANGE and DEL is orphaned only until its own TTL.
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.exists(keys.meta)
                pipe.delete(keys.meta, keys.state, keys.history, keys.lock, keys.idems, *idems)
                existed, _ = await pipe.execute()
        if not existed:
            raise SessionNotFound("no such session")

    def lock(self, tenant: str, session_id: str) -> AbstractAsyncContextManager[SessionLock]:
        """``async with store.lock(t, sid) as lk``: serialises turns of one session across workers.

        Raises SessionNotFound, SessionBusy (held past lock_wait_ms) or StoreUnavailable. Release is
        compare-and-delete: an expired lock taken over by another owner is never removed by us.
        """
        return self._locked(self._keys(tenant, session_id), tenant, session_id)

    @contextlib.asynccontextmanager
    async def _locked(self, keys: SessionKeys, tenant: str, session_id: str) -> AsyncIterator[SessionLock]:
        token = secrets.token_hex(16)
        with redis_errors():
            if not await self._redis.exists(keys.meta):
                raise SessionNotFound("no such session")
            await self._wait_for_lock(keys.lock, token)
        try:
            yield SessionLock(tenant=tenant, session_id=session_id, token=token)
        finally:
            try:
                await self._release(keys=[keys.lock], args=[token])
            except Exception as exc:
                if not _is_unavailable(exc):
                    raise
                # Never mask the turn's own outcome: the lock frees itself after lock_ttl_ms.
                logger.warning("could not release session lock (expires by itself): %s", exc)

    async def _wait_for_lock(self, lock_key: str, token: str) -> None:
        deadline = time.monotonic() + self._lock_wait_s
        sleep_s = _LOCK_POLL_MIN_S
        while True:
            holder_pttl_ms = await self._acquire(keys=[lock_key], args=[token, self._lock_ttl_ms])
            if holder_pttl_ms == 0:
                return
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise session_busy(holder_pttl_ms / 1000)
            await asyncio.sleep(min(remaining_s, sleep_s * random.uniform(0.5, 1.0)))
            sleep_s = min(sleep_s * 2, _LOCK_POLL_MAX_S)

    async def commit_turn(
        self, lock: SessionLock, *, expected_turns: int, state: dict, entries: list[dict],
        idempotency: IdempotentReply | None = None,
    ) -> int:
        """Write state, history entries, counter (+ idempotency record) atomically; return new turns."""
        keys = self._keys(lock.tenant, lock.session_id)
        script_keys = [keys.meta, keys.state, keys.history, keys.lock, keys.idems]
        now_ms = int(time.time() * 1000)  # wall clock: scores of the idems zset are epoch ms
        args: list[Any] = [lock.token, expected_turns, json.dumps(state), self._history_max, self._ttl_ms]
        args += [now_ms, len(entries), *(json.dumps(e) for e in entries)]
        if idempotency is not None:
            script_keys.append(keys.idem(idempotency.key))
            record = {"key": idempotency.key, "fingerprint": idempotency.fingerprint, "response": idempotency.response}
            args += [json.dumps(record), self._idem_ttl_ms, now_ms + self._idem_ttl_ms]
        with redis_errors():
            result = await self._commit(keys=script_keys, args=args)
        code = int(result[0])
        if code == -1:
            raise TurnConflict("session lock lost (expired or taken over) before commit")
        if code == -2:
            raise SessionNotFound("no such session")
        if code == -3:
            raise TurnConflict(f"turn counter moved: expected {expected_turns}, found {result[1]}")
        return code

    async def get_idempotent(self, tenant: str, session_id: str, key: str) -> IdempotentReply | None:
        keys = self._keys(tenant, session_id)
        with redis_errors():
            raw = await self._redis.get(keys.idem(key))
        if raw is None:
            return None
        data = json.loads(raw)
        return IdempotentReply(key=data["key"], fingerprint=data["fingerprint"], response=data["response"])

    async def ping(self) -> bool:
        """True when Redis answers; False (never raises) when it is unreachable."""
        try:
            return bool(await self._redis.ping())
        except Exception as exc:
            if not _is_unavailable(exc):
                raise
            return False

    async def close(self) -> None:
        await close_client(self._redis)


def connect(url: str, *, socket_timeout_s: float = 2.0) -> RedisClient:
    """A redis.asyncio client for a standalone, Cluster or Sentinel URL (app/store/url.py; lazy:
    connects on first use). Every key of one session shares a hash tag, so each MULTI and Lua
    script of the store touches one slot and runs unchanged on a Cluster.

    Only connection errors are retried (twice, 20-250 ms jittered), never timeouts: a timed-out
    command may have run, and a retried commit must not be able to apply twice (the commit
    script's counter check makes a retry a TurnConflict at worst).
    """
    target = parse_redis_url(url)
    retry = Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.25), 2, (rex.ConnectionError,))
    options: dict[str, Any] = {
        "decode_responses": True, "socket_timeout": socket_timeout_s, "socket_connect_timeout": socket_timeout_s,
        "health_check_interval": 15,  # PING a connection idle longer than this (s) before reusing it
    }
    if target.kind == "standalone":
        return redis.asyncio.from_url(url, retry=retry, **options)
    options |= {"username": target.username, "password": target.password}
    if target.kind == "cluster":
        # The cluster client follows MOVED/ASK and refreshes its slot map on its own. It retries
        # timeouts too (redis-py's fixed ERRORS_ALLOW_RETRY), `retry` only sets how often: safe for
        # the same reason, a retried commit is refused by the counter check.
        return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
                            ssl=target.ssl, retry=retry, **options)
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs={
        "socket_timeout": socket_timeout_s, "socket_connect_timeout": socket_timeout_s})
    # The master is looked up through the sentinels on every new connection, so a failover is
    # followed by reconnecting (ConnectionError -> retried, ReadOnlyError -> StoreUnavailable until then).
    return sentinel.master_for(target.service_name, db=target.db, retry=retry, **options)


async def close_client(client: RedisClient) -> None:
    """Close a client from `connect`, with the sentinel connections a Sentinel-backed one holds."""
    await client.aclose()
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.aclose()
