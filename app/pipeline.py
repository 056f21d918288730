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
from app.dialogue.tracker import DialogueTracker, Evidence, TurnAnalysis, record_action
from app.errors import ApiError
from app.batching import MicroBatcher
from app.schemas import ImageReading, ReplyAudio, TurnResponse, Usage
from app.store import IdempotentReply, SessionRecord, SessionStore, utc_now
from models.decoder import Decoder, GenerationStats, Messages, ReplyContext
from models.speech import Transcript
from models.tts import SpeechSynthesizer
from models.vision import ImageReading as VisionReading

HISTORY_IN_PROMPT = 4  # entries; a 135M model loses the thread with more
EVIDENCE_KEPT = 6  # notes of earlier transcripts and images carried in the state
SYSTEM_PROMPT = (
    "You are a friendly customer-service assistant. Known facts: {facts}.\n"
    'Reply to the customer with this message, reworded naturally if you like, keeping every fact exactly: "{draft}"'
)

TokenSink = Callable[[str], None]
NO_SESSION = Conversation()  # a stateless request: webhooks get no session id
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
    """Each encoder behind its batcher, so concurrent turns share its batches."""

    text: MicroBatcher[str, np.ndarray]  # utterance -> (D,) unit embedding
    speech: MicroBatcher[np.ndarray, Transcript]  # (N,) 16 kHz clip -> transcript (+ features if the decoder wants)
    vision: MicroBatcher[Image, VisionReading]


@dataclass(frozen=True)
class Perception:
    """What the encoders made of one turn's media."""

    transcript: Transcript | None
    readings: list[VisionReading]  # one per image, in order


@dataclass(frozen=True)
class Understanding:
    """A turn read and tracked: everything but the reply's wording."""

    state: DialogueState
    analysis: TurnAnalysis
    decision: Decision
    seen: Perception
    heard: str  # the voice clip's transcript ("" without one)
    utterance: str  # what the user typed and said


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
        if retry_key and (stored := await self._replay(tenant, session_id, retry_key, turn)):
            return stored
        async with self.store.lock(tenant, session_id) as lock:
            # Checked again under the lock: a concurrent retry may have committed meanwhile.
            if retry_key and (stored := await self._replay(tenant, session_id, retry_key, turn)):
                return stored
            clock.lap("lock")
            record = await self.store.get(tenant, session_id)
            clock.lap("load")
            response = await self.respond(DialogueState.model_validate(record.state), record.history, turn,
                                          on_token=on_token, conversation=Conversation(session_id, tenant))
            timings.update(response.timings_ms)
            clock.last = time.perf_counter()
            remembered = None
            if retry_key:
                # Without the spoken reply (about a megabyte of WAV): a replay speaks the stored words again.
                remembered = IdempotentReply(retry_key.key, retry_key.fingerprint,
                                             response.model_dump(exclude={"reply_audio"}))
            await self.store.commit_turn(
                lock, expected_turns=record.turns, state=response.state.model_dump(),
                entries=_entries(turn, response), idempotency=remembered,
            )
            clock.lap("commit")
        response.timings_ms = {**timings, "total": round((time.perf_counter() - started) * 1000, 1)}
        return response

    async def respond(
        self, previous: DialogueState, history: list[dict], turn: UserTurn, *, on_token: TokenSink | None = None,
        conversation: Conversation = NO_SESSION,
    ) -> TurnResponse:
        """Understand the turn and write the reply; touches no store (the caller commits, or not).

        Between the policy's decision and the reply, the webhook the decision needs is called (an
        action, or the handoff); `conversation` says whom it is about."""
        if turn.reply_audio and self.voice is None:
            raise ApiError(422, "reply_audio_unavailable",
                           "spoken replies are off on this server (PARLEY_TTS=off, or no voice installed)")
        timings: dict[str, float] = {}
        started = time.perf_counter()
        clock = _Stopwatch(timings)
        understood = await self._understand(previous, turn, clock)
        state, seen = understood.state, understood.seen
        said = [*history, {"role": "user", "text": understood.utterance, "turn": state.turns, "at": utc_now()}]
        decision = await self._act(conversation, state, understood.analysis, understood.decision, said)
        clock.lap("act")
        context = ReplyContext(
            reply_prompt(decision, state, history, understood.utterance),
            image_features=tuple(r.features for r in seen.readings if r.features is not None),
            audio_features=seen.transcript.features if seen.transcript else None,
        )
        stats = GenerationStats()
        generated = await self._generate(context, on_token, stats, timings, started)
        reply_ok = grounded(generated, decision, self.domain)
        reply = generated.strip() if reply_ok else decision.draft
        clock.lap("decode")
        spoken = await self._speak(reply) if turn.reply_audio else None
        clock.lap("speak")
        return TurnResponse(
            turn=state.turns, reply=reply, action=decision.action,
            grounded=reply_ok, transcript=understood.heard or None,
            images=[_public(r) for r in seen.readings], state=state, reply_audio=spoken, timings_ms=timings,
            usage=Usage(prompt_tokens=stats.prompt_tokens, completion_tokens=stats.completion_tokens),
        )

    async def track(self, previous: DialogueState, turn: UserTurn) -> DialogueState:
        """The state after `turn`, without writing a reply (to replay earlier turns of a conversation)."""
        return (await self._understand(previous, turn, _Stopwatch({}))).state

    async def _understand(self, previous: DialogueState, turn: UserTurn, clock: _Stopwatch) -> Understanding:
        seen = await self._perceive(turn)
        clock.lap("media")
        heard = seen.transcript.text.strip() if seen.transcript else ""
        utterance = " ".join(part for part in (turn.text, heard) if part)
        vectors = await self.encoders.text.map(self.tracker.texts_to_embed(utterance))  # the utterance and its clauses
        clock.lap("encode")
        evidence = _evidence(turn.text, seen)
        state, analysis = self.tracker.update(previous, self.tracker.turn_input(evidence, utterance, vectors))
        state.evidence = (previous.evidence + _notes(state.turns, evidence))[-EVIDENCE_KEPT:]
        decision = decide(state, analysis, self.domain)
        state.requested_slot = decision.requested_slot
        clock.lap("track")
        return Understanding(state, analysis, decision, seen, heard, utterance)

    async def _replay(
        self, tenant: str, session_id: str, retry_key: RetryKey, turn: UserTurn
    ) -> TurnResponse | None:
        stored = await self.store.get_idempotent(tenant, session_id, retry_key.key)
        if stored is None:
            return None
        if stored.fingerprint != retry_key.fingerprint:
            raise ApiError(422, "idempotency_key_reused",
                           "this Idempotency-Key was used with a different request; use a new key for a new turn")
        response = TurnResponse.model_validate({**stored.response, "replayed": True})
        if turn.reply_audio:  # the same key means the same request: it asked for the reply spoken
            response.reply_audio = await self._speak(response.reply)
        return response

    async def _act(
        self, who: Conversation, state: DialogueState, analysis: TurnAnalysis, decision: Decision, said: list[dict]
    ) -> Decision:
        """Make the webhook call the turn needs, between the policy's decision and the reply: the action
        the decision asks for (its answer goes into the state and the reply), or, once per session, the
        handoff. A backend that is down changes the reply, never the outcome of the turn."""
        if decision.call is not None:
            assert self.webhooks is not None  # a domain with actions needs the secret: checked at start-up (runtime)
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
        """Speech and vision run side by side, each batched with other turns' media."""
        async def nothing() -> None:  # a modality the turn did not bring
            return None

        speech = self.encoders.speech.submit(turn.audio) if turn.audio is not None else nothing()
        transcript, readings = await asyncio.gather(speech, self.encoders.vision.map(list(turn.images)))
        return Perception(transcript=transcript, readings=readings)

    async def _generate(
        self, context: ReplyContext, on_token: TokenSink | None, stats: GenerationStats, timings: dict[str, float],
        started: float,
    ) -> str:
        """The decoder's reply; records when its first piece arrived (ms since the turn's start)."""
        pieces = []
        async for piece in self.decoder.stream(context, max_new_tokens=self.max_new_tokens, stats=stats):
            if not pieces:
                timings["first_token"] = round((time.perf_counter() - started) * 1000, 1)
            pieces.append(piece)
            if on_token is not None:
                on_token(piece)
        return "".join(pieces)


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


def reply_prompt(decision: Decision, state: DialogueState, history: list[dict], utterance: str) -> Messages:
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
