"""One turn, end to end. The only place that knows the order of the steps."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL.Image import Image

from app.dialogue.actions import Conversation, WebhookClient
from app.dialogue.domain import Domain
from app.dialogue.policy import Decision, decide, grounded
from app.dialogue.state import DialogueState, EvidenceNote
from app.dialogue.tracker import DialogueTracker, Evidence, TurnAnalysis, TurnInput, record_action
from app.errors import ApiError
from app.schemas import ImageReading, ReplyAudio, TurnResponse
from app.store import IdempotentReply, SessionRecord, SessionStore, utc_now
from models.decoder import Decoder, Messages
from models.speech import SpeechEncoder, Transcript
from models.text import TextEncoder
from models.tts import SpeechSynthesizer
from models.vision import ImageReading as VisionReading
from models.vision import VisionEncoder

HISTORY_IN_PROMPT = 4  # entries; a 135M model loses the thread with more
EVIDENCE_KEPT = 6  # notes of earlier transcripts and images carried in the state
SYSTEM_PROMPT = (
    "You are a friendly customer-service assistant. Known facts: {facts}.\n"
    'Reply to the customer with this message, reworded naturally if you like, keeping every fact exactly: "{draft}"'
)

TokenSink = Callable[[str], None]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserTurn:
    """A validated, decoded turn as the pipeline takes it."""

    text: str
    images: tuple[Image, ...] = ()
    audio: np.ndarray | None = None  # (N,) float32 mono at the speech encoder's rate
    fingerprint: str = ""  # hash of what was sent (text and media bytes), whatever the encoding
    reply_audio: bool = False  # speak the reply too

    @property
    def modalities(self) -> list[str]:
        present = {"text": bool(self.text), "image": bool(self.images), "audio": self.audio is not None}
        return [name for name, here in present.items() if here]


@dataclass(frozen=True)
class RetryKey:
    """A client's Idempotency-Key and a hash of the request it came with."""

    key: str
    fingerprint: str


@dataclass(frozen=True)
class Encoders:
    text: TextEncoder
    speech: SpeechEncoder
    vision: VisionEncoder


@dataclass(frozen=True)
class Perception:
    """What the encoders made of one turn's media."""

    transcript: Transcript | None
    readings: list[VisionReading]  # one per image, in order


class TurnPipeline:
    def __init__(
        self, store: SessionStore, tracker: DialogueTracker, *, encoders: Encoders, decoder: Decoder,
        max_new_tokens: int, webhooks: WebhookClient | None = None, voice: SpeechSynthesizer | None = None,
    ) -> None:
        self.store = store
        self.tracker = tracker
        self.domain: Domain = tracker.domain
        self.encoders = encoders
        self.decoder = decoder
        self.max_new_tokens = max_new_tokens
        if self.domain.actions and webhooks is None:
            raise ValueError(f"the domain binds actions ({', '.join(self.domain.actions)}): "
                             "set PARLEY_ACTION_SECRET to sign their requests")
        self.webhooks = webhooks
        self.voice = voice

    async def create_session(self, tenant: str, metadata: dict) -> SessionRecord:
        return await self.store.create(tenant=tenant, state=DialogueState().model_dump(), metadata=metadata)

    async def run_turn(
        self, tenant: str, session_id: str, turn: UserTurn, *, on_token: TokenSink | None = None,
        retry_key: RetryKey | None = None,
    ) -> TurnResponse:
        """Run one turn under the session's lock; commit state and history only if all of it succeeds.

        With a retry key, a turn already committed under that key is answered from the store
        instead of being run again.
        """
        timings: dict[str, float] = {}
        started = time.perf_counter()
        clock = _Stopwatch(timings)
        if turn.reply_audio and self.voice is None:
            raise ApiError(422, "reply_audio_unavailable",
                           "spoken replies are off on this server (PARLEY_TTS=off, or no voice installed)")
        if retry_key and (stored := await self._replay(tenant, session_id, retry_key)):
            return stored
        async with self.store.lock(tenant, session_id) as lock:
            # Checked again under the lock: a concurrent retry may have committed meanwhile.
            if retry_key and (stored := await self._replay(tenant, session_id, retry_key)):
                return stored
            clock.lap("lock")
            record = await self.store.get(tenant, session_id)
            clock.lap("load")
            seen = await self._perceive(turn)
            clock.lap("media")
            heard = seen.transcript.text.strip() if seen.transcript else ""
            utterance = " ".join(part for part in (turn.text, heard) if part)
            embedding = (await asyncio.to_thread(self.encoders.text.predict_batch, [utterance]))[0] if utterance else None
            clock.lap("encode")
            previous = DialogueState.model_validate(record.state)
            evidence = _evidence(turn.text, seen)
            state, analysis = self.tracker.update(previous, TurnInput(evidence, utterance, embedding))
            state.evidence = (previous.evidence + _notes(state.turns, evidence))[-EVIDENCE_KEPT:]
            decision = decide(state, analysis, self.domain)
            state.requested_slot = decision.requested_slot
            clock.lap("track")
            said = [*record.history, {"role": "user", "text": utterance, "turn": state.turns, "at": utc_now()}]
            decision = await self._act(Conversation(session_id, tenant), state, analysis, decision, said)
            clock.lap("act")
            generated = await self._generate(_prompt(decision, state, record.history, utterance), on_token)
            reply_ok = grounded(generated, decision, self.domain)
            reply = generated.strip() if reply_ok else decision.draft
            clock.lap("decode")
            spoken = await self._speak(reply) if turn.reply_audio else None
            clock.lap("speak")
            response = TurnResponse(
                turn=record.turns + 1, reply=reply, action=decision.action, grounded=reply_ok,
                transcript=heard or None, images=[_public(r) for r in seen.readings], state=state,
                reply_audio=spoken, timings_ms=timings,
            )
            remembered = None
            if retry_key:
                remembered = IdempotentReply(retry_key.key, retry_key.fingerprint, response.model_dump())
            await self.store.commit_turn(
                lock, expected_turns=record.turns, state=state.model_dump(), entries=_entries(turn, response),
                idempotency=remembered,
            )
            clock.lap("commit")
        response.timings_ms = {**timings, "total": round((time.perf_counter() - started) * 1000, 1)}
        return response

    async def _replay(self, tenant: str, session_id: str, retry_key: RetryKey) -> TurnResponse | None:
        stored = await self.store.get_idempotent(tenant, session_id, retry_key.key)
        if stored is None:
            return None
        if stored.fingerprint != retry_key.fingerprint:
            raise ApiError(422, "idempotency_key_reused",
                           "this Idempotency-Key was used with a different request; use a new key for a new turn")
        return TurnResponse.model_validate({**stored.response, "replayed": True})

    async def _act(
        self, who: Conversation, state: DialogueState, analysis: TurnAnalysis, decision: Decision, said: list[dict]
    ) -> Decision:
        """Make the webhook call the turn needs, between the policy's decision and the reply: the action
        the decision asks for (its answer goes into the state and the reply), or, once per session, the
        handoff. A backend that is down changes the reply, never the outcome of the turn."""
        if decision.call is not None:
            assert self.webhooks is not None  # checked in __init__
            action = self.domain.actions[decision.call]
            result = await self.webhooks.call_action(action, who, state, said)
            record_action(state, action.provides, result.slots)
            return decide(state, analysis, self.domain, result=result)
        if state.handed_off and not state.handoff_notified and self.webhooks and self.webhooks.handoff_url:
            result = await self.webhooks.hand_over(who, state, said)
            state.handoff_notified = result.ok
            return decide(state, analysis, self.domain, result=result)
        return decision

    async def _speak(self, reply: str) -> ReplyAudio | None:
        """The reply as WAV, off the event loop; a voice that fails costs the audio, not the turn."""
        assert self.voice is not None  # checked before the turn started
        try:
            wav = await asyncio.to_thread(self.voice.synthesize, reply)
        except Exception as exc:  # a subprocess or ONNX failure: the text reply still stands
            log.error("speaking the reply failed: %s", exc)
            return None
        return ReplyAudio(data=base64.b64encode(wav).decode("ascii"))

    async def _perceive(self, turn: UserTurn) -> Perception:
        """Speech and vision run side by side, off the event loop."""
        async def nothing() -> list:  # a modality the turn did not bring
            return []

        speech = asyncio.to_thread(self.encoders.speech.predict_batch, [turn.audio]) if turn.audio is not None else nothing()
        vision = asyncio.to_thread(self.encoders.vision.predict_batch, list(turn.images)) if turn.images else nothing()
        transcripts, readings = await asyncio.gather(speech, vision)
        return Perception(transcript=transcripts[0] if transcripts else None, readings=readings)

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


def _evidence(text: str, seen: Perception) -> tuple[Evidence, ...]:
    pieces = [Evidence(text, "text")] if text else []
    if seen.transcript and seen.transcript.text.strip():
        pieces.append(Evidence(seen.transcript.text, "audio", seen.transcript.confidence))
    for reading in seen.readings:
        if reading.ocr_text:
            pieces.append(Evidence(reading.ocr_text, "image", reading.ocr_confidence))
        pieces += [Evidence(code, "image") for code in reading.barcodes]
    return tuple(pieces)


def _notes(turn: int, evidence: tuple[Evidence, ...]) -> list[EvidenceNote]:
    return [EvidenceNote(turn=turn, modality=e.modality, text=" ".join(e.text.split())) for e in evidence
            if e.modality != "text"]


def _public(reading: VisionReading) -> ImageReading:
    return ImageReading(caption=reading.caption, ocr_text=reading.ocr_text or None, labels=reading.labels,
                        barcodes=reading.barcodes)


def _prompt(decision: Decision, state: DialogueState, history: list[dict], utterance: str) -> Messages:
    facts = [f"{name}: {value}" for name, value in decision.facts.items()]
    facts += [f"{note.modality} from turn {note.turn}: {note.text}" for note in state.evidence]
    system = SYSTEM_PROMPT.format(facts="; ".join(facts) or "none yet", draft=decision.draft)
    messages: Messages = [{"role": "system", "content": system}]
    messages += [{"role": e["role"], "content": e["text"]} for e in history[-HISTORY_IN_PROMPT:] if e["text"]]
    messages.append({"role": "user", "content": utterance or "(sent a photo)"})
    return messages


def _entries(turn: UserTurn, response: TurnResponse) -> list[dict]:
    at = utc_now()
    user = {"role": "user", "text": turn.text, "turn": response.turn, "modalities": turn.modalities, "at": at}
    if response.transcript:
        user["transcript"] = response.transcript
    if response.images:
        user["images"] = [image.model_dump() for image in response.images]
    assistant = {"role": "assistant", "text": response.reply, "turn": response.turn, "modalities": ["text"], "at": at,
                 "action": response.action}
    return [user, assistant]
