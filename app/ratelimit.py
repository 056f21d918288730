"""Per-tenant request limits, counted in Redis so that every replica shares them.

A fixed one-minute window per (tenant, bucket), opened by the first request and counted by one
Lua script (INCR, then PEXPIRE when the key has no expiry yet), so the window lives in Redis
alone and replicas' clocks play no part:

    {prefix}:rl:{tenant}:{bucket}     string  requests in the current window, expires at its end

Buckets: "req" (every /v1 request) and "turn" (POST .../turns). A limit of 0 is off.
With Redis unreachable the limiter raises StoreUnavailable, i.e. the same 503 + Retry-After the
store gives: every /v1 request needs Redis anyway, and answering at once spares it a second timeout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from redis.asyncio import Redis as AsyncRedis

from app.store import redis_errors

WINDOW_MS = 60_000

# KEYS[1] counter; ARGV window_ms. Returns {count, ms left in the window}.
_HIT_LUA = """
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""


@dataclass(frozen=True)
class Verdict:
    limit: int
    remaining: int
    reset_s: int  # seconds until the window ends

    @property
    def allowed(self) -> bool:
        return self.remaining >= 0

    def headers(self) -> dict[str, str]:
        """X-RateLimit-Reset is seconds from now (delta, as in the IETF RateLimit draft), not an epoch."""
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(self.remaining, 0)),
            "X-RateLimit-Reset": str(self.reset_s),
        }


class RateLimiter:
    def __init__(self, redis: AsyncRedis, *, prefix: str, limits: dict[str, int]) -> None:
        self._prefix, self._limits = prefix, limits
        self._hit = redis.register_script(_HIT_LUA)

    async def hit(self, tenant: str, bucket: str) -> Verdict | None:
        """Count one request; None when the bucket has no limit. remaining < 0 means over the limit."""
        limit = self._limits.get(bucket, 0)
        if limit <= 0:
            return None
        with redis_errors():
            count, ttl_ms = await self._hit(keys=[f"{self._prefix}:rl:{tenant}:{bucket}"], args=[WINDOW_MS])
        return Verdict(limit=limit, remaining=limit - int(count), reset_s=max(1, math.ceil(int(ttl_ms) / 1000)))
