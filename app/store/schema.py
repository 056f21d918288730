"""Versions of the stored session format and the steps that migrate one to the next.

A deploy that changes what a session stores (its state JSON, history entries or metadata) bumps
SCHEMA_VERSION and registers the step from the previous version in MIGRATIONS. The stores migrate
an older session when they read it (app/store/base.py: `upgrade`) and refuse one no chain of steps leads
from, or one newer than they are, with SessionVersionUnsupported (never SessionNotFound: the session is there).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

SCHEMA_VERSION = 2  # format of a stored session: its meta fields, state JSON and history entries
LEGACY_SCHEMA = 1  # the format of a session whose meta hash has no schema field


@dataclass(frozen=True)
class StoredSession:
    """What a migration rewrites: a session's JSON parts, in one format version."""

    state: dict
    metadata: dict
    history: list[dict]  # every stored entry, oldest first


Migration = Callable[[StoredSession], StoredSession]


def _v1_to_v2(session: StoredSession) -> StoredSession:
    """v2 only added the schema field itself, which the write-back sets."""
    return session


# One step per format change, keyed by the version it starts from: a change bumps SCHEMA_VERSION and
# adds its step here. Sessions of a version with no step left are refused, not misread.
MIGRATIONS: Mapping[int, Migration] = {1: _v1_to_v2}
