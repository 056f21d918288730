"""The Redis keys of one session (the layout is in app/store/redis.py)."""

import hashlib


class SessionKeys:
    """Every key of one session; all share the hash tag {tenant:sid}."""

    def __init__(self, prefix: str, tenant: str, session_id: str) -> None:
        base = f"{prefix}:{{{tenant}:{session_id}}}"
        self.meta, self.state, self.history = f"{base}:meta", f"{base}:state", f"{base}:history"
        self.lock, self.idems = f"{base}:lock", f"{base}:idems"
        self._base = base

    def idem(self, key: str) -> str:
        return f"{self._base}:idem:{hashlib.sha256(key.encode()).hexdigest()}"
