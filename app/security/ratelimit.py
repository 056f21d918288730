"""Request limits per tenant and per end user, counted in Redis so that every replica shares them.

Limits, each "N per minute" (0 = off):

    scope    counts     key under {prefix}:{rl:<tenant>}:     setting (PARLEY_...)
    tenant   requests   tenant:requests                       RATE_LIMIT_PER_MIN
    tenant   turns      tenant:turns                          TURN_RATE_LIMIT_PER_MIN
    client   requests   client:<address>:requests             CLIENT_RATE_LIMIT_PER_MIN
    client   turns      client:<address>:turns                CLIENT_TURN_RATE_LIMIT_PER_MIN
    session  turns      session:<id>:turns                    SESSION_TURN_RATE_LIMIT_PER_MIN

Every /v1 request counts as a request; POST .../turns and chat completions also count as turns.
The per-user limits (client address, session) sit well below the tenant's, so that in open mode,
where every customer of a public chat page is tenant "default", one noisy customer is refused
long before the tenant's quota runs out for everyone else.

Each limit is a GCRA (generic cell rate algorithm, i.e. a token bucket kept as one timestamp):
N per minute means one request every 60/N s on average with bursts of up to N. A fixed window
lets a client send N at the end of one window and N more at the start of the next; here the
N-th request of a burst leaves nothing to spend until time has refilled it, whatever the clock shows.

All the limits of one request are checked and charged by one Lua script: either every limit has
room and all are charged, or none is (a refused request uses up nothing, so a session hammering at
its own limit never drains its tenant's quota). The script reads Redis's own clock (TIME), so the
replicas' clocks play no part; tests inject a clock instead. The keys of one tenant share a Redis
Cluster hash tag, so the script can touch them all on a Cluster too. With Redis unreachable the
limiter raises StoreUnavailable, as the store does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal


from app.store.redis import RedisClient, redis_errors

if TYPE_CHECKING:
    from app.config import Settings

PERIOD_US = 60_000_000  # every limit is per minute; Redis's clock and the arithmetic below are in microseconds

# KEYS[i]: limit i's theoretical arrival time (TAT), microseconds on the clock below.
# ARGV[1]: now in microseconds, or '' for Redis's own clock; ARGV[2i], ARGV[2i+1]: limit i's emission
# interval and burst tolerance, microseconds. All integers below 2^53, so Lua's doubles hold them exactly.
# Returns 4 numbers per limit: allowed (1/0), remaining, ms until fully refilled, ms until one fits (0: now).
_GCRA_LUA = """
local now = tonumber(ARGV[1])
if not now then
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
end
local out, tats, refused = {}, {}, false
for i, key in ipairs(KEYS) do
  local interval, tolerance = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local tat = math.max(tonumber(redis.call('GET', key) or now), now)
  local wait = tat - now - tolerance
  if wait > 0 then
    refused = true
    tats[i] = tat
    for _, v in ipairs({0, 0, math.ceil((tat - now) / 1000), math.ceil(wait / 1000)}) do out[#out + 1] = v end
  else
    tats[i] = tat + interval
    local remaining = math.floor((tolerance - (tat - now)) / interval)
    for _, v in ipairs({1, remaining, math.ceil((tats[i] - now) / 1000), 0}) do out[#out + 1] = v end
  end
end
if not refused then
  for i, key in ipairs(KEYS) do
    redis.call('SET', key, string.format('%.0f', tats[i]), 'PX', math.ceil((tats[i] - now) / 1000))
  end
end
return out
"""

Scope = Literal["tenant", "client", "session"]
Counts = Literal["requests", "turns"]
_PER = {"tenant": "for this tenant", "client": "per client address", "session": "per session"}


@dataclass(frozen=True)
class Limit:
    scope: Scope
    counts: Counts
    per_min: int  # 0 = off

    @property
    def name(self) -> str:
        """What the X-RateLimit-Scope header says, e.g. "session-turns"."""
        return f"{self.scope}-{self.counts}"

    def describe(self) -> str:
        return f"{self.per_min} {self.counts} per minute {_PER[self.scope]}"


def limits_from_settings(settings: Settings) -> tuple[Limit, ...]:
    return (
        Limit("tenant", "requests", settings.rate_limit_per_min),
        Limit("tenant", "turns", settings.turn_rate_limit_per_min),
        Limit("client", "requests", settings.client_rate_limit_per_min),
        Limit("client", "turns", settings.client_turn_rate_limit_per_min),
        Limit("session", "turns", settings.session_turn_rate_limit_per_min),
    )


@dataclass(frozen=True)
class Verdict:
    limit: Limit
    allowed: bool
    remaining: int  # requests that would still pass right now
    reset_s: int  # seconds until the limit is back at its full burst
    retry_after_s: int  # seconds until a refused request would pass; 0 when allowed

    def headers(self) -> dict[str, str]:
        """X-RateLimit-Reset is seconds from now (delta, as in the IETF RateLimit draft), not an epoch."""
        return {
            "X-RateLimit-Limit": str(self.limit.per_min),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_s),
            "X-RateLimit-Scope": self.limit.name,
        }


class RateLimiter:
    def __init__(
        self, redis: RedisClient, *, prefix: str, limits: tuple[Limit, ...], clock: Callable[[], float] | None = None,
    ) -> None:
        """`clock`: seconds, as time.time; None = Redis's own clock (production: one clock for all replicas)."""
        for limit in limits:
            if not 0 <= limit.per_min <= PERIOD_US:
                raise ValueError(f"a rate limit must be 0 (off) to {PERIOD_US} per minute, not {limit.per_min}")
        self._prefix, self._limits, self._clock = prefix, limits, clock
        self._check = redis.register_script(_GCRA_LUA)

    async def check(self, *, tenant: str, client: str, session: str | None = None, turn: bool = False) -> Verdict | None:
        """Count one request against every limit that applies; charge all of them or, if one is full, none.

        Returns the refused limit (the one to wait longest for) or else the one with least room left;
        None when no limit applies. `tenant` must be a valid tenant name (no '{', '}' or ':').
        """
        subjects = {"tenant": "tenant", "client": f"client:{client}",
                    "session": f"session:{session}" if session is not None else None}
        applying = [(limit, f"{self._prefix}:{{rl:{tenant}}}:{subjects[limit.scope]}:{limit.counts}")
                    for limit in self._limits
                    if limit.per_min > 0 and (turn or limit.counts == "requests") and subjects[limit.scope]]
        if not applying:
            return None
        now = "" if self._clock is None else str(int(self._clock() * 1_000_000))
        args: list[str | int] = [now]
        for limit, _ in applying:
            interval = PERIOD_US // limit.per_min
            args += [interval, (limit.per_min - 1) * interval]
        with redis_errors():
            out = await self._check(keys=[key for _, key in applying], args=args)
        verdicts = [
            Verdict(limit, allowed=bool(out[4 * i]), remaining=int(out[4 * i + 1]),
                    reset_s=_seconds(out[4 * i + 2]), retry_after_s=_seconds(out[4 * i + 3]))
            for i, (limit, _) in enumerate(applying)
        ]
        refused = [v for v in verdicts if not v.allowed]
        if refused:
            return max(refused, key=lambda v: v.retry_after_s)
        return min(verdicts, key=lambda v: (v.remaining, -v.reset_s))


def _seconds(ms: int) -> int:
    """Whole seconds, rounded up: a client that waits this long is never early."""
    return math.ceil(int(ms) / 1000)
