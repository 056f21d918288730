"""API keys and the tenant each one maps to.

Two sources, merged (a key in both, or twice, is an error):

    PARLEY_API_KEYS=key1:acme,key2:globex        plain keys, comma-separated key:tenant pairs
    PARLEY_API_KEYS_FILE=/etc/parley/keys        one `sha256hex:tenant` a line; blank lines and # comments skipped

A file line for a key KEY is made with `printf %s KEY | sha256sum` (the hex digest) plus `:tenant`:

    printf '%s:%s\n' "$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)" acme >> keys

Only sha256 digests are kept in memory. A presented key is hashed and compared with every
known digest by `hmac.compare_digest`, so neither the match nor its position leaks timing.
Nothing here puts a key (or a file line that may hold one) into an error message or a log.
With no keys configured the service runs open: every request is tenant "default".
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from app.store.base import _TENANT  # the store's own tenant rule, so a configured tenant can always be stored

DEFAULT_TENANT = "default"
_HEX64 = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class ApiKeys:
    """sha256 digests of the accepted keys, each with its tenant. Empty = open mode."""

    entries: tuple[tuple[bytes, str], ...] = ()

    @property
    def open(self) -> bool:
        return not self.entries

    def tenant_for(self, presented: str) -> str | None:
        """The tenant of `presented`, or None; constant time over all known keys."""
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for known, tenant in self.entries:  # no early exit: every digest is compared
            if hmac.compare_digest(digest, known):
                found = tenant
        return found


def _check_tenant(tenant: str, where: str) -> str:
    if not _TENANT.match(tenant):
        raise ValueError(
            f"{where}: tenant {tenant!r} is not a valid tenant name "
            "(1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit)"
        )
    return tenant


def parse_api_keys(text: str) -> list[tuple[bytes, str]]:
    """`key:tenant,key:tenant` -> [(sha256(key), tenant)]. A key may contain ':' (the last one splits)."""
    pairs = []
    for n, item in enumerate((part.strip() for part in text.split(",")), start=1):
        if not item:
            continue
        key, sep, tenant = item.rpartition(":")
        where = f"PARLEY_API_KEYS entry {n}"
        if not sep or not key.strip():
            raise ValueError(f"{where} is not of the form key:tenant")
        pairs.append((hashlib.sha256(key.strip().encode()).digest(), _check_tenant(tenant.strip(), where)))
    return pairs


def parse_key_file(path: Path) -> list[tuple[bytes, str]]:
    """Lines `sha256hex:tenant` -> [(digest, tenant)]."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ValueError(f"PARLEY_API_KEYS_FILE {str(path)!r} cannot be read: {exc.strerror}") from None
    pairs = []
    for n, line in enumerate((raw.strip() for raw in lines), start=1):
        if not line or line.startswith("#"):
            continue
        digest, sep, tenant = line.partition(":")
        digest = digest.strip().lower()
        where = f"PARLEY_API_KEYS_FILE {str(path)!r} line {n}"
        if not sep or len(digest) != 64 or not set(digest) <= _HEX64:
            # the line is not echoed: a plain key pasted by mistake would end up in the log
            raise ValueError(f"{where} is not of the form sha256hex:tenant (make it with: printf %s KEY | sha256sum)")
        pairs.append((bytes.fromhex(digest), _check_tenant(tenant.strip(), where)))
    return pairs


def load_api_keys(api_keys: str | None, api_keys_file: Path | None) -> ApiKeys:
    """Both sources merged; ValueError (without any key in it) on a malformed entry or a repeated key."""
    pairs = parse_api_keys(api_keys or "") + (parse_key_file(api_keys_file) if api_keys_file else [])
    if len({digest for digest, _ in pairs}) != len(pairs):
        raise ValueError("the same API key is configured more than once (PARLEY_API_KEYS / PARLEY_API_KEYS_FILE)")
    return ApiKeys(tuple(pairs))


def open_mode_warning(keys: ApiKeys) -> str | None:
    """The start-up warning when no key is configured, else None."""
    if not keys.open:
        return None
    return (
        "no API keys configured (PARLEY_API_KEYS / PARLEY_API_KEYS_FILE): /v1 is open to anyone who can reach it, "
        f"every request is tenant {DEFAULT_TENANT!r}"
    )
