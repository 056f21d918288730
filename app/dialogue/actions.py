"""Webhooks to customer-service backends: actions (look an order up) and the handoff to a person.

The only part of app/dialogue that speaks HTTP; the policy and tracker stay pure and see an
`ActionResult`. Every request is a JSON POST signed with HMAC-SHA256 over "<timestamp>.<body>"
(headers below), so a receiver can check it came from Parley and refuse replays of old requests; with
tracing on, a W3C `traceparent` header names the turn's action span as the parent of the receiver's work.
Connect errors, timeouts and 5xx are retried with exponential backoff; a 4xx is not (asking again
will not help). An answer that is too big, not a JSON object or not string-valued counts as a
failure: whatever a backend does, the turn still gets a reply.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from app.dialogue.domain import ActionSpec
from app.dialogue.policy import ActionResult
from app.dialogue.state import DialogueState
from app.observability.tracing import trace_headers

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Parley-Signature"  # "sha256=<hex HMAC-SHA256 of '<timestamp>.<raw body>'>"
TIMESTAMP_HEADER = "X-Parley-Timestamp"  # unix seconds; signed, so an old request cannot be replayed
DELIVERY_HEADER = "X-Parley-Delivery"  # one id per call, the same on its retries: receivers can drop repeats
SIGNATURE_TOLERANCE_S = 300  # what `verify_signature` accepts as "now"

BACKOFF_S = 0.25  # before the first retry; doubled for each one after, plus up to as much again of jitter
MAX_ANSWER_BYTES = 64 * 1024  # an order lookup is a few hundred bytes
MAX_ANSWER_ITEMS = 32  # slots + facts
MAX_VALUE_CHARS = 300  # a fact is a phrase the reply states, not a document
HISTORY_SENT = 6  # entries of recent history in an action payload
HANDOFF_TIMEOUT_S = 5.0
HANDOFF_RETRIES = 2


class WebhookError(Exception):
    """A webhook call failed for good (after any retries); the message says why, for the log."""


@dataclass(frozen=True)
class Conversation:
    """Who a webhook call is about (None in a stateless OpenAI-style request)."""

    session_id: str | None = None
    tenant: str | None = None


def worst_case_s(timeout_s: float, retries: int, backoff_s: float = BACKOFF_S) -> float:
    """The longest a call can take: every attempt timing out, every backoff at its jitter's top."""
    return (retries + 1) * timeout_s + sum(2 * backoff_s * 2**i for i in range(retries))


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(
    secret: bytes, *, timestamp: str, body: bytes, signature: str, now: float | None = None,
    tolerance_s: float = SIGNATURE_TOLERANCE_S,
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent (constant-time compare)."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookClient:
    """Posts signed JSON with bounded retries, over one pooled HTTP client (made on first use, in the
    serving event loop; building one costs ~40 ms of TLS set-up, a kept-alive connection ~1 ms)."""

    def __init__(self, secret: bytes, *, handoff_url: str | None = None, backoff_s: float = BACKOFF_S) -> None:
        if not secret:
            raise ValueError("webhooks need a shared secret: set PARLEY_ACTION_SECRET")
        self.secret = secret
        self.handoff_url = handoff_url
        self.backoff_s = backoff_s
        self._http: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def call_action(
        self, action: ActionSpec, conversation: Conversation, state: DialogueState, history: list[dict]
    ) -> ActionResult:
        """Ask the backend; never raises for the backend's faults (they come back as ok=False)."""
        payload = {
            "event": "action", "action": action.name, "session_id": conversation.session_id,
            "tenant": conversation.tenant, "intent": state.intent, "slots": dict(state.slots),
            "history": [_brief(entry) for entry in history[-HISTORY_SENT:]],
        }
        try:
            answer = await self.post(action.url, payload, timeout_s=action.timeout_s, retries=action.retries)
            return _result(answer, action.provides)
        except WebhookError as exc:
            log.warning("action %s failed: %s", action.name, exc)
            return ActionResult(ok=False)

    async def hand_over(self, conversation: Conversation, state: DialogueState, transcript: list[dict]) -> ActionResult:
        """Send the whole conversation to the handoff webhook; its answer's body is not read."""
        assert self.handoff_url is not None
        payload = {
            "event": "handoff", "session_id": conversation.session_id, "tenant": conversation.tenant,
            "state": state.model_dump(), "transcript": [_brief(entry) for entry in transcript],
        }
        try:
            await self.post(self.handoff_url, payload, timeout_s=HANDOFF_TIMEOUT_S, retries=HANDOFF_RETRIES)
        except WebhookError as exc:
            log.warning("handoff failed: %s", exc)
            return ActionResult(ok=False)
        return ActionResult(ok=True)

    async def post(self, url: str, payload: dict, *, timeout_s: float, retries: int) -> Any:
        """POST `payload` signed; return the parsed JSON answer (None for an empty body)."""
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        delivery = uuid.uuid4().hex
        for attempt in range(retries + 1):
            if attempt:
                delay = self.backoff_s * 2 ** (attempt - 1)
                await asyncio.sleep(delay + random.uniform(0, delay))
            timestamp = str(int(time.time()))  # fresh on every attempt: a retry is a new, current request
            headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                       SIGNATURE_HEADER: sign(self.secret, timestamp, body), DELIVERY_HEADER: delivery,
                       **trace_headers()}  # W3C traceparent: the backend's work joins the turn's trace
            if self._http is None:
                self._http = httpx.AsyncClient(follow_redirects=False, trust_env=False)
            try:
                async with asyncio.timeout(timeout_s):  # the whole attempt, however slowly bytes trickle in
                    status, raw = await _send(self._http, url, body, headers, timeout_s)
            except (TimeoutError, httpx.HTTPError) as exc:  # HTTPError: also bodies that fail to decode
                reason = f"{type(exc).__name__} {exc}".strip()
            except _TooBig:
                raise WebhookError(f"{url}: answer over {MAX_ANSWER_BYTES} bytes") from None
            else:
                if status < 300:
                    return _parse(url, raw)
                if status < 500:
                    raise WebhookError(f"{url}: HTTP {status}, not retried")
                reason = f"HTTP {status}"
            log.info("webhook %s attempt %d/%d failed: %s", url, attempt + 1, retries + 1, reason)
        raise WebhookError(f"{url}: {retries + 1} attempts failed, the last with {reason}")


class _TooBig(Exception):
    pass


async def _send(
    http: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], timeout_s: float
) -> tuple[int, bytes]:
    async with http.stream("POST", url, content=body, headers=headers, timeout=timeout_s) as response:
        if response.status_code >= 300:
            return response.status_code, b""
        raw = bytearray()
        async for chunk in response.aiter_bytes():
            raw += chunk
            if len(raw) > MAX_ANSWER_BYTES:
                raise _TooBig
        return response.status_code, bytes(raw)


def _parse(url: str, raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:  # also bad UTF-8
        raise WebhookError(f"{url}: answer is not JSON: {exc}") from exc


def _result(answer: Any, provides: tuple[str, ...]) -> ActionResult:
    """{"slots": {name: str}, "facts": {name: str}}: every slot the action provides, string values only."""
    if not isinstance(answer, dict):
        raise WebhookError(f"answer is {type(answer).__name__}, not a JSON object with 'slots' and 'facts'")
    slots, facts = (_strings(answer.get(key) or {}, key) for key in ("slots", "facts"))
    if len(slots) + len(facts) > MAX_ANSWER_ITEMS:
        raise WebhookError(f"answer has {len(slots) + len(facts)} slots and facts; at most {MAX_ANSWER_ITEMS}")
    missing = [name for name in provides if name not in slots]
    if missing:
        raise WebhookError(f"answer lacks the slots {missing} the domain says this action provides")
    return ActionResult(ok=True, slots={name: slots[name] for name in provides}, facts=facts)


def _strings(section: Any, key: str) -> dict[str, str]:
    if not isinstance(section, dict):
        raise WebhookError(f"'{key}' is not an object")
    for name, value in section.items():
        if not (name.isidentifier() and isinstance(value, str) and value.strip()):
            raise WebhookError(f"'{key}.{name}' must be a name with a non-empty string value")
        if len(value) > MAX_VALUE_CHARS or not value.isprintable():
            raise WebhookError(f"'{key}.{name}' is not a short line of printable text")
    return {name: value.strip() for name, value in section.items()}


def _brief(entry: dict) -> dict:
    """A history entry as a backend needs it: who said what, when (no image readings or internals)."""
    kept = {key: entry[key] for key in ("role", "text", "turn", "at", "transcript") if entry.get(key) is not None}
    return kept
