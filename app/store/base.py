"""What the pipeline needs from session storage (`SessionStore`), the records it reads and writes, and the
errors every store raises (api/ maps them to HTTP). Two implementations: redis.py, memory.py."""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from app.store.schema import Migration, StoredSession

_SESSION_ID = re.compile(r"^[0-9a-f]{32}\Z")  # secrets.token_hex(16)
# No ':', '{' or '}' so a tenant can never break out of its hash tag or key segment.
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_LOCK_POLL_MIN_S = 0.005  # first retry sleep while a session is locked; doubles per try ...
_LOCK_POLL_MAX_S = 0.1  # ... up to this, each sleep jittered to 50-100 %


class StoreError(Exception):
    """Base of every error the store raises (routes map each subclass to one status)."""


class SessionNotFound(StoreError):
    """No such session for this tenant (never created, expired, deleted or a malformed id)."""


class SessionBusy(StoreError):
    """The session lock was not acquired within lock_wait_ms."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TurnConflict(StoreError):
    """Commit refused: the lock is no longer ours or the turn counter moved. Nothing was written."""


class StoreUnavailable(StoreError):
    """Redis is unreachable, timed out or still loading."""


class SessionVersionUnsupported(StoreError):
    """The session was stored in a format this version cannot read: older with no migration from it, or newer."""

    def __init__(self, *, found: int, supported: int) -> None:
        made_by = "an older" if found < supported else "a newer"
        super().__init__(f"session stored in format v{found} by {made_by} Parley; this one reads v{supported}")
        self.found, self.supported = found, supported


def utc_now() -> str:
    """ISO-8601 UTC with milliseconds, e.g. 2026-11-23T10:00:00.000Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class SessionRecord:
    id: str
    tenant: str
    created_at: str  # ISO-8601 UTC
    metadata: dict
    turns: int  # committed turns so far (store-owned counter)
    state: dict  # opaque JSON-able dialogue state
    history: list[dict]  # oldest first, the last history_max entries; [] when read with_history=False


@dataclass(frozen=True)
class SessionLock:
    tenant: str
    session_id: str
    token: str


@dataclass(frozen=True)
class IdempotentReply:
    key: str  # client's Idempotency-Key
    fingerprint: str  # hash of the request body: the same key with another body can be refused
    response: dict  # the stored response JSON


def upgrade(session: StoredSession, *, found: int, to: int, migrations: Mapping[int, Migration]) -> StoredSession:
    """`session`, stored in format `found`, in format `to`; SessionVersionUnsupported when it is newer than
    `to` or a step on the way is missing."""
    if found > to or any(version not in migrations for version in range(found, to)):
        raise SessionVersionUnsupported(found=found, supported=to)
    for version in range(found, to):
        session = migrations[version](session)
    return session


def check_ids(tenant: str, session_id: str) -> None:
    """SessionNotFound for a tenant or session id that could never have been issued."""
    for value, pattern in ((session_id, _SESSION_ID), (tenant, _TENANT)):
        if not isinstance(value, str) or not pattern.match(value):
            raise SessionNotFound("no such session")


def check_tenant(tenant: str) -> None:
    if not isinstance(tenant, str) or not _TENANT.match(tenant):
        raise ValueError(f"bad tenant name {tenant!r}")


def check_limits(*, ttl_s: int, history_max: int, lock_ttl_ms: int, lock_wait_ms: int, idempotency_ttl_s: int) -> None:
    if min(ttl_s, history_max, lock_ttl_ms, idempotency_ttl_s) <= 0 or lock_wait_ms < 0:
        raise ValueError("store TTLs and history_max must be > 0, lock_wait_ms >= 0")


def session_busy(holder_left_s: float) -> SessionBusy:
    """The error for a lock still held after lock_wait_ms. The holder's TTL only bounds a crashed holder;
    a live one is done in about a turn's time, so it suggests at most a second."""
    return SessionBusy("session is busy with another turn",
                       retry_after_s=min(max(holder_left_s, _LOCK_POLL_MAX_S), 1.0))


class SessionStore(Protocol):
    """What the pipeline needs from session storage."""

    async def create(self, *, tenant: str, state: dict, metadata: dict | None = None) -> SessionRecord: ...
    async def get(self, tenant: str, session_id: str, *, with_history: bool = True) -> SessionRecord: ...
    async def delete(self, tenant: str, session_id: str) -> None: ...
    def lock(self, tenant: str, session_id: str) -> AbstractAsyncContextManager[SessionLock]: ...
    async def commit_turn(
        self, lock: SessionLock, *, expected_turns: int, state: dict, entries: list[dict],
        idempotency: IdempotentReply | None = None,
    ) -> int: ...
    async def get_idempotent(self, tenant: str, session_id: str, key: str) -> IdempotentReply | None: ...
    async def ping(self) -> bool: ...
    async def close(self) -> None: ...
