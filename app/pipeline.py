"""One turn, end to end. The only place that knows the order of the steps."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, aclosing, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
from opentelemetry import trace
from opentelemetry.trace import Span

from app.dialogue.actions import Conversation, WebhookClient
from app.dialogue.decision_text import PLACEHOLDER, DecisionText, describe, fill
from app.dialogue.domain import Domain
from app.dialogue.knowledge import NOTHING, Found, KnowledgeBase, held_error_code, passages
from app.dialogue.policy import Decision, already_failed, decide, grounded
from app.dialogue.state import DialogueState, EvidenceNote
from app.dialogue.tools import ToolCall, ToolOffer, ToolResult, ToolUnsatisfiable, choose_tool, tool_answer
from app.dialogue.tracker import DialogueTracker, Evidence, TurnAnalysis, record_action
from app.errors import ParleyError
from app.batching import MicroBatcher
from app.modalities import MODALITIES
from app.observability.tracing import span
from app.reply import LiveClip, ReplyOptions, WrittenReply, clip, tokens_in
from app.store.base import IdempotentReply, SessionRecord, SessionStore, utc_now
from app.turn import EventSink, Replace, Token, TurnInput, TurnResult, TurnStream, from_record, to_record
from models.decoder import Decoder, GenerationStats, Messages, ReplyContext, Sampling
from models.tts import SpeechSynthesizer

HISTORY_IN_PROMPT = 4  # entries; a 135M model loses the thread with more
# A causal LM's reply continues the draft's first words: left to open the reply itself, SmolLM2-135M condoled
# ("I'm sorry for your loss") or refused; over held-out turns the replies kept went from 19% to 77% with 4 words.
OPENING_WORDS = 4
DRAFT_SLACK_TOKENS = 16  # a reply may take its draft's length and a half plus these (greetings, a closing line)
EVIDENCE_KEPT = 6  # notes of earlier transcripts and images carried in the state
SYSTEM_PROMPT = (
    "You are a friendly customer-service assistant. Known facts: {facts}.\n"
    'Reply to the customer with this message, reworded naturally if you like, keeping every fact exactly: "{draft}"'
)

T = TypeVar("T")
NO_SESSION = Conversation()  # a stateless request: webhooks get no session id
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryKey:
    """A client's Idempotency-Key and a hash of the request it came with."""

    key: str
    fingerprint: str


@dataclass(frozen=True)
class Encoders:
    """Each encoder behind its batcher, so concurrent turns share its batches."""

    text: MicroBatcher[str, np.ndarray]  # utterance -> (D,) unit embedding
    media: dict[str, MicroBatcher[Any, Any]]  # modality name -> its encoder (app/modalities/)

    def all(self) -> list[MicroBatcher[Any, Any]]:
        return [self.text, *self.media.values()]


Perception = dict[str, list[Any]]  # modality name -> the encoder's output for each item the turn brought


@dataclass(frozen=True)
class Understanding:
    """A turn read and tracked: everything but the reply's wording."""

    state: DialogueState
    analysis: TurnAnalysis
    decision: Decision
    found: Found  # what the knowledge base has for the turn
    seen: Perception
    utterance: str  # what the user typed and said


class TurnPipeline:
    def __init__(
        self, store: SessionStore, tracker: DialogueTracker, *, encoders: Encoders, decoder: Decoder,
        max_new_tokens: int, webhooks: WebhookClient | None = None, voice: SpeechSynthesizer | None = None,
        knowledge: KnowledgeBase | None = None,
    ) -> None:
        self.store = store
        self.tracker = tracker
        self.domain: Domain = tracker.domain
        self.encoders = encoders
        self.decoder = decoder
        self.max_new_tokens = max_new_tokens
        self.webhooks = webhooks
        self.voice = voice
        self.knowledge = knowledge

    async def create_session(self, tenant: str, metadata: dict) -> SessionRecord:
        return await self.store.create(tenant=tenant, state=DialogueState().model_dump(), metadata=metadata)

    def run_turn(self, tenant: str, session_id: str, turn: TurnInput, *, retry_key: RetryKey | None = None
                 ) -> TurnStream:
        """Run one turn under the session's lock; commit state and history only if all of it succeeds.

        With a retry key, a turn already committed under that key is answered from the store
        instead of being run again (its stream is Done alone).
        """
        return TurnStream(lambda emit: self._run_turn(tenant, session_id, turn, retry_key, emit))

    async def _run_turn(
        self, tenant: str, session_id: str, turn: TurnInput, retry_key: RetryKey | None, emit: EventSink
    ) -> TurnResult:
        steps = _Steps()
        with span("turn", **{"parley.session_id": session_id, "parley.tenant": tenant}):
            if retry_key and (stored := await self._replay(tenant, session_id, retry_key, turn)):
                return stored
            async with AsyncExitStack() as held:
                with steps.step("lock"):
                    lock = await held.enter_async_context(self.store.lock(tenant, session_id))
                    # Checked again under the lock: a concurrent retry may have committed meanwhile.
                    stored = await self._replay(tenant, session_id, retry_key, turn) if retry_key else None
                if stored:
                    return stored
                with steps.step("load"):
                    record = await self.store.get(tenant, session_id)
                result = await self._reply(DialogueState.model_validate(record.state), record.history, turn, steps,
                                           emit=emit, conversation=Conversation(session_id, tenant))
                remembered = None
                if retry_key:
                    remembered = IdempotentReply(retry_key.key, retry_key.fingerprint, to_record(result))
                with steps.step("commit"):
                    await self.store.commit_turn(
                        lock, expected_turns=record.turns, state=result.state.model_dump(),
                        entries=_entries(turn, result), idempotency=remembered,
                    )
        result.timings_ms = {**steps.timings, "total": steps.since_start()}
        return result

    def respond(
        self, previous: DialogueState, history: list[dict], turn: TurnInput, *,
        conversation: Conversation = NO_SESSION, started: float | None = None,
    ) -> TurnStream:
        """Understand the turn and write the reply (options.n of them); touches no store (the caller commits,
        or not). `started` (time.perf_counter()) is when the caller's work on the turn began, if earlier.

        Between the policy's decision and the reply, the webhook the decision needs is called (an
        action, or the handoff); `conversation` says whom it is about. When the client offers tools and one
        can be filled from the state, the turn ends in that tool call instead: no webhook, no reply. The
        turn's tool results (its answers to such a call) are stated as a webhook's answer is."""
        async def run(emit: EventSink) -> TurnResult:
            steps = _Steps(started)
            with span("turn"):
                result = await self._reply(previous, history, turn, steps, emit=emit, conversation=conversation)
            result.timings_ms = {**steps.timings, "total": steps.since_start()}
            return result

        return TurnStream(run)

    async def _reply(
        self, previous: DialogueState, history: list[dict], turn: TurnInput, steps: _Steps, *,
        emit: EventSink, conversation: Conversation,
    ) -> TurnResult:
        options = turn.options
        if options.reply_audio and self.voice is None:
            raise ParleyError("invalid", "reply_audio_unavailable",
                              "spoken replies are off on this server (PARLEY_TTS=off, or no voice installed)")
        understood = await self._understand(previous, turn, steps)
        state, seen = understood.state, understood.seen
        said = [*history, {"role": "user", "text": understood.utterance, "turn": state.turns, "at": utc_now()}]
        outcome: dict[str, Any] = {"turn": state.turns, "state": state, "timings_ms": steps.timings, "readings": {
            name: [MODALITIES[name].summary(output) for output in outputs] for name, outputs in seen.items()}}
        if not turn.tool_results and (call := self._tool_call(state, understood.decision, turn.tools)) is not None:
            return TurnResult(**outcome, action="tool_call", choices=[], tool_call=call)
        if turn.tool_results:  # the client ran the call the previous reply made: its answer is this turn's
            decision = self._tool_answered(state, understood.analysis, turn.tool_results)
        else:
            decision = await self._act(conversation, state, understood.analysis, understood.decision, said,
                                       steps=steps, found=understood.found)
        described = describe(decision, state, self.domain, corrected=understood.analysis.corrected)
        opening = reply_opening(decision.draft) if getattr(self.decoder, "continues_opening", False) else ""
        context = _decoder_context(reply_prompt(decision, state, history, understood.utterance), seen, described,
                                   opening)
        stats = [GenerationStats() for _ in range(options.n)]
        with steps.step("decode"):
            written = await asyncio.gather(*(
                self._write(context, decision, options, index, stats=stats[index],
                            emit=emit if options.n == 1 else None, steps=steps)  # n replies cannot share a stream
                for index in range(options.n)))
        first = written[0]
        if options.n == 1 and not first.grounded:
            emit(Replace(first.text))
        spoken = None
        if options.reply_audio:
            with steps.step("speak"):
                spoken = await self._speak(first.text)
        trace.get_current_span().set_attributes({  # the turn's span
            "parley.turn": state.turns, "parley.modalities": turn.modalities, "parley.action": decision.action,
            "parley.grounded": first.grounded})
        return TurnResult(**outcome, action=decision.action, choices=list(written), reply_audio=spoken,
                          prompt_tokens=stats[0].prompt_tokens,
                          completion_tokens=sum(w.completion_tokens for w in written))

    def _tool_call(self, state: DialogueState, decision: Decision, tools: ToolOffer | None) -> ToolCall | None:
        """The call a client's tool makes in place of this turn's reply, or None. The intent is complete
        when the policy would now say its response or call its webhook."""
        try:
            return choose_tool(state, self.domain, tools, complete=decision.action in ("respond", "call_action"))
        except ToolUnsatisfiable as exc:
            raise ParleyError("unsatisfiable", "tool_unsatisfiable", str(exc), param="tool_choice") from exc

    def _tool_answered(self, state: DialogueState, analysis: TurnAnalysis, results: tuple[ToolResult, ...]) -> Decision:
        """The client's tool output into the state and the decision, as an action webhook's answer goes."""
        intent = self.domain.intents[state.intent] if state.intent else None
        provides = self.domain.actions[intent.action].provides if intent and intent.action else ()
        answer = tool_answer(results, provides)
        if answer.ok:
            record_action(state, provides, answer.slots)
        return decide(state, analysis, self.domain, result=answer)

    async def _write(
        self, context: ReplyContext, decision: Decision, options: ReplyOptions, index: int, *,
        stats: GenerationStats, emit: EventSink | None, steps: _Steps,
    ) -> WrittenReply:
        """One reply: the decoder's, or the policy's draft when the decoder's drops a fact; then clipped to the
        client's stop sequences and max_tokens. The whole reply is written and checked before it is clipped:
        a reply stopped at max_tokens would fail the fact check for what it had not said yet, and the client
        would get the start of the policy's wording instead of the start of the model's. The pieces streamed
        to `emit` are clipped as they come (LiveClip), the same way."""
        tokenizer = getattr(self.decoder, "tokenizer", None)  # local decoders have one; a remote one has none
        budget = self._budget(decision, tokenizer)
        generated, gave_up = await self._generate(
            context, emit, stats, steps, budget=budget, sampling=options.sampling(index),
            live=LiveClip(options, tokenizer), failed=lambda text: already_failed(text, decision, self.domain))
        ran_out = stats.completion_tokens >= budget  # the model was cut by the server
        # A [placeholder] left in the reply names a fact the decision lacks: the model invented it. A rewording
        # that took its whole budget has wandered off the draft (_budget) and stops mid-sentence.
        reply_ok = (not gave_up and not (ran_out and not self._delexicalised)
                    and grounded(generated, decision, self.domain) and not PLACEHOLDER.search(generated))
        text, cut = clip(generated.strip() if reply_ok else decision.draft, options, tokenizer)
        finish = cut or ("length" if reply_ok and ran_out else "stop")
        # Usage counts what the client gets: the model's own tokens, or those of the text sent (draft, clipped, opened).
        model_wrote_all = reply_ok and cut is None and not context.opening
        produced = stats.completion_tokens if model_wrote_all else tokens_in(text, tokenizer)
        return WrittenReply(text=text, grounded=reply_ok, finish_reason=finish, completion_tokens=produced)

    @property
    def _delexicalised(self) -> bool:
        """The decoder writes [placeholders] the decision's values fill (grounded by construction)."""
        return getattr(self.decoder, "grounded_by_construction", False)

    def _budget(self, decision: Decision, tokenizer) -> int:  # noqa: ANN001 - a transformers tokenizer or None
        """Most tokens a reply may take: a reply that rewords the draft, half as long again and a little more;
        one much longer has wandered off (and would be replaced by the draft anyway). A reply model writing its
        own phrasing (grounded by construction) is not tied to the draft's length."""
        if tokenizer is None or self._delexicalised:
            return self.max_new_tokens
        return draft_budget(decision.draft, tokenizer, self.max_new_tokens)

    async def track(self, previous: DialogueState, turn: TurnInput) -> DialogueState:
        """The state after `turn`, without writing a reply (to replay earlier turns of a conversation)."""
        return (await self._understand(previous, turn, _Steps())).state

    async def _understand(self, previous: DialogueState, turn: TurnInput, steps: _Steps) -> Understanding:
        seen = await self._perceive(turn, steps)
        heard = [MODALITIES[name].heard(output) for name, outputs in seen.items() for output in outputs]
        utterance = " ".join(part for part in (turn.text, *heard) if part)
        vectors = []
        if utterance:
            with steps.step("encode.text", timing="encode"):  # the utterance and each of its clauses
                vectors = await self.encoders.text.map(self.tracker.texts_to_embed(utterance))
        with steps.step("track"):
            evidence = _evidence(turn.text, seen)
            tracked = self.tracker.turn_input(evidence, utterance, vectors)
            state, analysis = self.tracker.update(previous, tracked)
            state.evidence = (previous.evidence + _notes(state.turns, evidence))[-EVIDENCE_KEPT:]
        with steps.step("policy", timing="track"):
            found = (self.knowledge.lookup(utterance, tracked.embedding, passages(utterance, state),
                                           held_code=held_error_code(state))
                     if self.knowledge else NOTHING)
            decision = decide(state, analysis, self.domain, found=found)
            state.requested_slot = decision.requested_slot
        return Understanding(state, analysis, decision, found, seen, utterance)

    async def _replay(
        self, tenant: str, session_id: str, retry_key: RetryKey, turn: TurnInput
    ) -> TurnResult | None:
        stored = await self.store.get_idempotent(tenant, session_id, retry_key.key)
        if stored is None:
            return None
        if stored.fingerprint != retry_key.fingerprint:
            raise ParleyError("invalid", "idempotency_key_reused",
                              "this Idempotency-Key was used with a different request; use a new key for a new turn")
        result = from_record(stored.response)
        if turn.options.reply_audio:  # the same key means the same request: it asked for the reply spoken
            result.reply_audio = await self._speak(result.reply)
        return result

    async def _act(
        self, who: Conversation, state: DialogueState, analysis: TurnAnalysis, decision: Decision, said: list[dict],
        *, steps: _Steps, found: Found,
    ) -> Decision:
        """Make the webhook call the turn needs, between the policy's decision and the reply: the action
        the decision asks for (its answer goes into the state and the reply), or, once per session, the
        handoff. A backend that is down changes the reply, never the outcome of the turn."""
        if decision.call is not None:
            assert self.webhooks is not None  # a domain with actions needs the secret: checked at start-up (runtime)
            action = self.domain.actions[decision.call]
            with steps.step("action", timing="act", **{"parley.action": action.name}):
                result = await self.webhooks.call_action(action, who, state, said)
            record_action(state, action.provides, result.slots)
            return decide(state, analysis, self.domain, result=result, found=found)
        if state.handed_off and not state.handoff_notified and self.webhooks and self.webhooks.handoff_url:
            with steps.step("action", timing="act", **{"parley.action": "handoff"}):
                result = await self.webhooks.hand_over(who, state, said)
            state.handoff_notified = result.ok
            return decide(state, analysis, self.domain, result=result, found=found)
        return decision

    async def _speak(self, reply: str) -> bytes | None:
        """The reply as WAV, off the event loop; a voice that fails costs the audio, not the turn."""
        assert self.voice is not None  # checked before the turn started
        try:
            return await asyncio.to_thread(self.voice.synthesize, reply)
        except Exception as exc:  # a subprocess or ONNX failure: the text reply still stands
            log.error("speaking the reply failed: %s", exc)
            return None

    async def _perceive(self, turn: TurnInput, steps: _Steps) -> Perception:
        """Each modality's encoder reads its items, side by side, each batched with other turns' media."""
        present = [(MODALITIES[name], items) for name, items in turn.media.items() if items]
        if not present:
            return {}
        with steps.step("perceive", timing="media"):
            outputs = await asyncio.gather(*(
                _traced(f"encode.{modality.encoder}", self.encoders.media[modality.name].map(list(items)),
                        **{f"parley.{modality.plural}": len(items)})
                for modality, items in present))
        read = {modality.name: found for (modality, _), found in zip(present, outputs, strict=True)}
        return {name: read[name] for name in MODALITIES if name in read}  # in the registry's order

    async def _generate(
        self, context: ReplyContext, emit: EventSink | None, stats: GenerationStats, steps: _Steps, *,
        budget: int, sampling: Sampling, live: LiveClip, failed: Callable[[str], bool],
    ) -> tuple[str, bool]:
        """The decoder's reply, its pieces emitted (as `live` lets them through) as they come, and whether it was
        given up because `failed` said so of the text so far (its decoding stops there, and that piece is not
        sent); marks when the turn's first piece arrived."""
        text = ""
        # Every Decoder's stream is an async generator: closing it when a reply is given up frees its batch row now.
        stream = cast(AsyncGenerator[str, None], self.decoder.stream(context, max_new_tokens=budget, stats=stats,
                                                                     sampling=sampling))
        async with aclosing(stream) as pieces:
            async for piece in pieces:
                if self._delexicalised:  # its placeholders arrive whole (one token each): the decision's values go in
                    piece = fill(piece, context.values) or piece  # an unknown one stays, and fails the check
                if not text and "first_token" not in steps.timings:
                    steps.mark("first_token")
                text += piece
                if failed(text):
                    return text, True
                if emit is not None and (passed := live.feed(piece)):
                    emit(Token(passed))
        return text, False


class _Steps:
    """Times the steps of one turn and traces each as a span: one mechanism, so that a reply's
    `timings_ms` and its trace tell the same story."""

    def __init__(self, started: float | None = None) -> None:
        self.timings: dict[str, float] = {}  # ms per step; first_token: ms from the turn's start
        self.started = time.perf_counter() if started is None else started

    @contextmanager
    def step(self, name: str, *, timing: str | None = None, **attributes: str | int) -> Iterator[Span]:
        """A span `name` around the block, whose time adds to timings[`timing`] (default: `name`)."""
        began = time.perf_counter()
        try:
            with span(name, **attributes) as current:
                yield current
        finally:
            key = timing or name
            self.timings[key] = round(self.timings.get(key, 0.0) + (time.perf_counter() - began) * 1000, 1)

    def mark(self, name: str) -> None:
        """A moment of the turn: ms since its start in the timings, an event on the current span."""
        self.timings[name] = self.since_start()
        trace.get_current_span().add_event(name)

    def since_start(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 1)


async def _traced(name: str, work: Awaitable[T], **attributes: str | int) -> T:
    """`work` awaited in a span of its own (an encoder running beside another)."""
    with span(name, **attributes):
        return await work


def _evidence(text: str, seen: Perception) -> tuple[Evidence, ...]:
    """What the turn brought, as the tracker reads it: the typed text, then each modality's readings."""
    pieces = [Evidence(text, "text")] if text else []
    for name, outputs in seen.items():
        pieces += [piece for output in outputs for piece in MODALITIES[name].evidence(output)]
    return tuple(pieces)


def _notes(turn: int, evidence: tuple[Evidence, ...]) -> list[EvidenceNote]:
    return [EvidenceNote(turn=turn, modality=e.modality, text=" ".join(e.text.split())) for e in evidence
            if e.modality != "text"]


def draft_budget(draft: str, tokenizer, cap: int) -> int:  # noqa: ANN001 - a transformers tokenizer
    """Tokens a causal LM may take to reword `draft`: its length and a half, and a little more; at most `cap`."""
    return min(cap, tokens_in(draft, tokenizer) * 3 // 2 + DRAFT_SLACK_TOKENS)


def _decoder_context(messages: Messages, seen: Perception, described: DecisionText, opening: str) -> ReplyContext:
    """The prompt, the decision as the reply model reads it, the reply's opening, and for a decoder that reads
    them the encoders' states (models/decoder.py names them per modality: that is the decoder's interface)."""
    image_features = tuple(r.features for r in seen.get("image", []) if r.features is not None)
    clips = seen.get("audio", [])
    return ReplyContext(messages, image_features=image_features, audio_features=clips[0].features if clips else None,
                        decision=described.text, values=described.values, required=described.required,
                        opening=opening)


def reply_opening(draft: str) -> str:
    """The words a causal LM's reply starts with: the draft's first OPENING_WORDS."""
    return " ".join(draft.split()[:OPENING_WORDS])


def reply_prompt(decision: Decision, state: DialogueState, history: list[dict], utterance: str) -> Messages:
    facts = [f"{name}: {value}" for name, value in decision.facts.items()]
    facts += [f"{note.modality} from turn {note.turn}: {note.text}" for note in state.evidence]
    system = SYSTEM_PROMPT.format(facts="; ".join(facts) or "none yet", draft=decision.draft)
    messages: Messages = [{"role": "system", "content": system}]
    messages += [{"role": e["role"], "content": e["text"]} for e in history[-HISTORY_IN_PROMPT:] if e["text"]]
    messages.append({"role": "user", "content": utterance or "(sent a photo)"})
    return messages


def _entries(turn: TurnInput, result: TurnResult) -> list[dict]:
    at = utc_now()
    user = {"role": "user", "text": turn.text, "turn": result.turn, "modalities": turn.modalities, "at": at}
    if result.transcript:
        user["transcript"] = result.transcript
    if result.images:
        user["images"] = result.images
    assistant = {"role": "assistant", "text": result.reply, "turn": result.turn, "modalities": ["text"], "at": at,
                 "action": result.action}
    return [user, assistant]
