"""A SessionStore in this process's memory, for unit tests and notebooks (serving uses Redis: app/store/redis.py).

It keeps the Redis store's contract (tests/test_store.py runs the same tests on both): a per-session
lock with a token and an expiry, commits that check the lock is still held and the turn counter has
not moved, idempotency records with their own TTL, sessions that expire when idle, tenants that never
see each other's sessions, and JSON-only values (what is stored is a copy, never a caller's object).

A turn waiting for a session's lock sleeps until the holder releases it or the holder's lock runs out
(no polling). Expiry times come from `clock` (seconds, time.monotonic by default), so tests move time
by injecting one; the lock wait (lock_wait_ms) is real time, as it is for a caller of the Redis store.
Expired sessions are dropped when next touched, and all of them on each `create`. Everything runs on
the event loop's thread: no method awaits between reading and writing its session. Its sessions end with
the process, so none is ever read by another version: it has no format versions (app/store/schema.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from app.store.base import (
    IdempotentReply,
    SessionLock,
    SessionNotFound,
    SessionRecord,
    TurnConflict,
    check_ids,
    check_limits,
    check_tenant,
    session_busy,
    utc_now,
)

SessionKey = tuple[str, str]  # (tenant, session id)


@dataclass
class _Session:
    created_at: str
    metadata: str  # JSON
    state: str  # JSON
    expires_at: float  # clock seconds; refreshed by every get and commit
    turns: int = 0
    history: list[str] = field(default_factory=list)  # JSON entries, oldest first


@dataclass
class _HeldLock:
    token: str
    expires_at: float  # clock seconds
    released: asyncio.Event = field(default_factory=asyncio.Event)  # set when it is released or taken over


class InMemorySessionStore:
    """SessionStore in a dict; the same options as RedisSessionStore, plus the clock expiries are read from."""

    def __init__(
        self, *, ttl_s: int = 86400, history_max: int = 200, lock_ttl_ms: int = 30000, lock_wait_ms: int = 10000,
        idempotency_ttl_s: int = 86400, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_limits(ttl_s=ttl_s, history_max=history_max, lock_ttl_ms=lock_ttl_ms, lock_wait_ms=lock_wait_ms,
                     idempotency_ttl_s=idempotency_ttl_s)
        self._ttl_s, self._history_max, self._idem_ttl_s = ttl_s, history_max, idempotency_ttl_s
        self._lock_ttl_s, self._lock_wait_s = lock_ttl_ms / 1000, lock_wait_ms / 1000
        self._clock = clock
        self._sessions: dict[SessionKey, _Session] = {}
        self._locks: dict[SessionKey, _HeldLock] = {}  # as in Redis, a lock outlives its expired session
        # Idempotency records keep their own TTL, past their session's: (record JSON, expires_at).
        self._idems: dict[SessionKey, dict[str, tuple[str, float]]] = {}

    async def create(self, *, tenant: str, state: dict, metadata: dict | None = None) -> SessionRecord:
        check_tenant(tenant)
        self._drop_expired()
        record = SessionRecord(id=secrets.token_hex(16), tenant=tenant, created_at=utc_now(),
                               metadata=dict(metadata or {}), turns=0, state=state, history=[])
        self._sessions[(tenant, record.id)] = _Session(
            created_at=record.created_at, metadata=json.dumps(record.metadata), state=json.dumps(state),
            expires_at=self._clock() + self._ttl_s)
        return record

    async def get(self, tenant: str, session_id: str, *, with_history: bool = True) -> SessionRecord:
        session = self._live(tenant, session_id)
        session.expires_at = self._clock() + self._ttl_s
        return SessionRecord(
            id=session_id, tenant=tenant, created_at=session.created_at, metadata=json.loads(session.metadata),
            turns=session.turns, state=json.loads(session.state),
            history=[json.loads(e) for e in session.history] if with_history else [],
        )

    async def delete(self, tenant: str, session_id: str) -> None:
        self._live(tenant, session_id)
        key = (tenant, session_id)
        del self._sessions[key]
        self._idems.pop(key, None)
        if (held := self._locks.pop(key, None)) is not None:
            held.released.set()

    def lock(self, tenant: str, session_id: str) -> AbstractAsyncContextManager[SessionLock]:
        """``async with store.lock(t, sid) as lk``: as RedisSessionStore.lock (SessionNotFound, SessionBusy after
        lock_wait_ms; release only removes a lock that still holds this token)."""
        check_ids(tenant, session_id)
        return self._locked(tenant, session_id)

    @contextlib.asynccontextmanager
    async def _locked(self, tenant: str, session_id: str) -> AsyncIterator[SessionLock]:
        self._live(tenant, session_id)
        key, token = (tenant, session_id), secrets.token_hex(16)
        await self._take(key, token)
        try:
            yield SessionLock(tenant=tenant, session_id=session_id, token=token)
        finally:
            held = self._locks.get(key)
            if held is not None and held.token == token:
                del self._locks[key]
                held.released.set()

    async def _take(self, key: SessionKey, token: str) -> None:
        """Take the lock, waiting (up to lock_wait_ms) until its holder releases it or the holder's lock expires."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lock_wait_s
        while True:
            held, now = self._locks.get(key), self._clock()
            if held is None or held.expires_at <= now:
                if held is not None:  # taken over: whoever waits on the old holder looks again
                    held.released.set()
                self._locks[key] = _HeldLock(token, now + self._lock_ttl_s)
                return
            remaining_s = deadline - loop.time()
            if remaining_s <= 0:
                raise session_busy(held.expires_at - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(held.released.wait(), timeout=min(remaining_s, held.expires_at - now))

    async def commit_turn(
        self, lock: SessionLock, *, expected_turns: int, state: dict, entries: list[dict],
        idempotency: IdempotentReply | None = None,
    ) -> int:
        """Write state, history entries, counter (+ idempotency record) together; return the new turn count.
        Checked in the Redis commit script's order: the lock, the session, the counter."""
        key, now = (lock.tenant, lock.session_id), self._clock()
        held = self._locks.get(key)
        if held is None or held.token != lock.token or held.expires_at <= now:
            raise TurnConflict("session lock lost (expired or taken over) before commit")
        session = self._live(*key)
        if session.turns != expected_turns:
            raise TurnConflict(f"turn counter moved: expected {expected_turns}, found {session.turns}")
        # Serialised before anything is written: a value JSON cannot hold fails the commit, not half of it.
        state_json, entries_json = json.dumps(state), [json.dumps(e) for e in entries]
        reply_json = None if idempotency is None else json.dumps(
            {"key": idempotency.key, "fingerprint": idempotency.fingerprint, "response": idempotency.response})
        session.state = state_json
        session.history = (session.history + entries_json)[-self._history_max:]
        session.turns += 1
        session.expires_at = now + self._ttl_s
        if idempotency is not None and reply_json is not None:
            self._idems.setdefault(key, {})[idempotency.key] = (reply_json, now + self._idem_ttl_s)
        return session.turns

    async def get_idempotent(self, tenant: str, session_id: str, key: str) -> IdempotentReply | None:
        check_ids(tenant, session_id)
        stored = self._idems.get((tenant, session_id), {}).get(key)
        if stored is None or stored[1] <= self._clock():
            return None
        data = json.loads(stored[0])
        return IdempotentReply(key=data["key"], fingerprint=data["fingerprint"], response=data["response"])

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        """Nothing to close; the sessions live as long as the object."""

    def _live(self, tenant: str, session_id: str) -> _Session:
        """The session, unless it is unknown or expired (then dropped) -> SessionNotFound."""
        check_ids(tenant, session_id)
        key = (tenant, session_id)
        session = self._sessions.get(key)
        if session is not None and session.expires_at <= self._clock():
            del self._sessions[key]
            session = None
        if session is None:
            raise SessionNotFound("no such session")
        return session

    def _drop_expired(self) -> None:
        now = self._clock()
        for key in [k for k, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[key]
        for key, records in list(self._idems.items()):
            for name in [n for n, (_, expires_at) in records.items() if expires_at <= now]:
                del records[name]
            if not records:
                del self._idems[key]
