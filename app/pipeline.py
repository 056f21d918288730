"""One turn, end to end. The only place that knows the order of the steps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.dialogue.domain import Domain
from app.dialogue.policy import Decision, decide, grounded
from app.dialogue.state import DialogueState
from app.dialogue.tracker import DialogueTracker, Evidence, TurnInput
from app.schemas import TurnResponse
from app.store import SessionRecord, SessionStore, utc_now
from models.decoder import Decoder, Messages
from models.text import TextEncoder

HISTORY_IN_PROMPT = 4  # entries; a 135M model loses the thread with more
SYSTEM_PROMPT = (
    "You are a friendly customer-service assistant. Known facts: {facts}.\n"
    'Reply to the customer with this message, reworded naturally if you like, keeping every fact exactly: "{draft}"'
)

TokenSink = Callable[[str], None]


@dataclass(frozen=True)
class UserTurn:
    """A validated turn as the pipeline takes it."""

    text: str

    @property
    def modalities(self) -> list[str]:
        return ["text"] if self.text else []


class TurnPipeline:
    def __init__(
        self,
        store: SessionStore,
        tracker: DialogueTracker,
        *,
        text_encoder: TextEncoder,
        decoder: Decoder,
        max_new_tokens: int,
    ) -> None:
        self.store = store
        self.tracker = tracker
        self.domain: Domain = tracker.domain
        self.text_encoder = text_encoder
        self.decoder = decoder
        self.max_new_tokens = max_new_tokens

    async def create_session(self, tenant: str, metadata: dict) -> SessionRecord:
        return await self.store.create(tenant=tenant, state=DialogueState().model_dump(), metadata=metadata)

    async def run_turn(
        self, tenant: str, session_id: str, turn: UserTurn, *, on_token: TokenSink | None = None
    ) -> TurnResponse:
        """Run one turn under the session's lock; commit state and history only if all of it succeeds."""
        timings: dict[str, float] = {}
        started = time.perf_counter()
        clock = _Stopwatch(timings)
        async with self.store.lock(tenant, session_id) as lock:
            clock.lap("lock")
            record = await self.store.get(tenant, session_id)
            clock.lap("load")
            embedding = (await asyncio.to_thread(self.text_encoder.predict_batch, [turn.text]))[0] if turn.text else None
            clock.lap("encode")
            previous = DialogueState.model_validate(record.state)
            state, analysis = self.tracker.update(
                previous, TurnInput(evidence=(Evidence(turn.text, "text"),), utterance=turn.text, embedding=embedding)
            )
            decision = decide(state, analysis, self.domain)
            state.requested_slot = decision.requested_slot
            clock.lap("track")
            generated = await self._generate(_prompt(decision, record.history, turn.text), on_token)
            reply_ok = grounded(generated, decision, self.domain)
            reply = generated.strip() if reply_ok else decision.draft
            clock.lap("decode")
            number = record.turns + 1
            await self.store.commit_turn(
                lock, expected_turns=record.turns, state=state.model_dump(), entries=_entries(turn, reply, number, decision)
            )
            clock.lap("commit")
        timings["total"] = round((time.perf_counter() - started) * 1000, 1)
        return TurnResponse(turn=number, reply=reply, action=decision.action, grounded=reply_ok, state=state, timings_ms=timings)

    async def _generate(self, messages: Messages, on_token: TokenSink | None) -> str:
        loop = asyncio.get_running_loop()

        def run() -> str:
            pieces = []
            for piece in self.decoder.stream(messages, max_new_tokens=self.max_new_tokens):
                pieces.append(piece)
                if on_token is not None:
                    loop.call_soon_threadsafe(on_token, piece)
            return "".join(pieces)

        return await asyncio.to_thread(run)


class _Stopwatch:
    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round((now - self.last) * 1000, 1)
        self.last = now


def _prompt(decision: Decision, history: list[dict], utterance: str) -> Messages:
    facts = "; ".join(f"{name}: {value}" for name, value in decision.facts.items()) or "none yet"
    messages: Messages = [{"role": "system", "content": SYSTEM_PROMPT.format(facts=facts, draft=decision.draft)}]
    messages += [{"role": e["role"], "content": e["text"]} for e in history[-HISTORY_IN_PROMPT:] if e["text"]]
    messages.append({"role": "user", "content": utterance or "(no text)"})
    return messages


def _entries(turn: UserTurn, reply: str, number: int, decision: Decision) -> list[dict]:
    at = utc_now()
    return [
        {"role": "user", "text": turn.text, "turn": number, "modalities": turn.modalities, "at": at},
        {"role": "assistant", "text": reply, "turn": number, "modalities": ["text"], "at": at, "action": decision.action},
    ]
