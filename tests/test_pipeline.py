"""TurnPipeline.run_turn on the in-memory store, with small encoders and a decoder of this file's own that
implement the pipeline's Protocols (no mock of the store): what a turn commits, what a failed turn leaves,
idempotent replays, the turn counter, and how turns of one session and of different sessions interleave.
Then the turn contract (app/turn.py): TurnInput -> events -> TurnResult, the idempotency record, a modality
registered by a test alone, and OpenAI streaming live or held back by the decoder's grounded_by_construction.
The real default domain and policy run; the encoders and decoder are fakes, so replies are the policy's."""

import asyncio
import hashlib
from pathlib import Path
from collections.abc import AsyncIterator

import numpy as np
import pytest
from transformers import AutoTokenizer

from app.api.turn_body import build_turn
from app.batching import MicroBatcher
from app.config import Settings
from app.wiring import CAUSAL_REPLY_TOKENS
from app.dialogue.domain import load_domain
from app.dialogue.sentiment import SentimentAnalyzer
from app.api.openai.serving import ChatTarget, to_chunks
from app.dialogue.state import DialogueState
from app.dialogue.tracker import DialogueTracker, Evidence, IntentClassifier
from app.errors import ParleyError
from app.modalities import MODALITIES, Modality
from app.pipeline import OPENING_WORDS, Encoders, RetryKey, TurnPipeline, draft_budget
from app.reply import ReplyOptions, WrittenReply, tokens_in
from app.store.memory import InMemorySessionStore
from app.turn import Done, Replace, Token, TurnEvent, TurnInput, TurnResult, TurnStream, from_record, to_record
from models.decoder import GREEDY, GenerationStats, ReplyContext, Sampling
from models.registry import default_decoder

TENANT = "acme"
DIM = 64  # embedding size of the bag-of-words encoder
STUCK_S = 30  # a guard against a hang (a deadlock would fail here), never a timing assertion


def bag_of_words(texts: list[str]) -> list[np.ndarray]:
    """A stand-in for the sentence encoder: each text a unit (DIM,) vector of hashed words; "explode" fails."""
    if any("explode" in text for text in texts):
        raise RuntimeError("text encoder crashed")
    vectors = []
    for text in texts:
        vector = np.zeros(DIM, dtype=np.float32)
        for word in text.lower().split():
            vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIM] += 1.0
        vectors.append(vector / max(float(np.linalg.norm(vector)), 1e-6))
    return vectors


def no_media(items: list) -> list:
    raise AssertionError("a text turn ran a media encoder")


class GatedDecoder:
    """A Decoder that writes "Happy to help." once its gate is open, counting who is inside; a user turn
    containing "crash" makes it fail halfway."""

    wants_features = False
    grounded_by_construction = False

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.at_gate = asyncio.Event()  # set when the first word is out and the rest waits for the gate
        self.calls = 0
        self.inside = 0
        self.most_inside = 0
        self.changed = asyncio.Condition()  # notified whenever `inside` changes

    async def stream(
        self, context: ReplyContext, *, max_new_tokens: int, stats: GenerationStats | None = None,
        sampling: Sampling = GREEDY,
    ) -> AsyncIterator[str]:
        self.calls += 1
        await self._enter(+1)
        try:
            await self.gate.wait()
            for piece in ("Happy ", "to ", "help."):
                if "crash" in str(context.messages[-1]["content"]) and piece == "to ":
                    raise RuntimeError("decoder crashed")
                if stats is not None:
                    stats.completion_tokens += 1
                yield piece
        finally:
            await self._enter(-1)

    async def _enter(self, step: int) -> None:
        async with self.changed:
            self.inside += step
            self.most_inside = max(self.most_inside, self.inside)
            self.changed.notify_all()

    async def wait_inside(self, count: int) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: self.inside >= count), STUCK_S)

    async def aclose(self) -> None:
        """Nothing to stop."""


@pytest.fixture(scope="module")
def tracker() -> DialogueTracker:
    domain = load_domain()
    names = [name for name, intent in domain.intents.items() for _ in intent.examples]
    examples = [text for intent in domain.intents.values() for text in intent.examples]
    return DialogueTracker(domain, IntentClassifier(names, np.stack(bag_of_words(examples))), SentimentAnalyzer())


@pytest.fixture
async def pipeline(tracker: DialogueTracker) -> AsyncIterator[TurnPipeline]:
    batched = {"max_batch_size": 8, "max_wait_ms": 0}
    encoders = Encoders(text=MicroBatcher("text", bag_of_words, **batched),
                        media={name: MicroBatcher(name, no_media, **batched) for name in ("audio", "image")})
    built = TurnPipeline(InMemorySessionStore(), tracker, encoders=encoders, decoder=GatedDecoder(), max_new_tokens=8)
    yield built
    for batcher in encoders.all():
        await batcher.aclose()


async def new_session(pipeline: TurnPipeline) -> str:
    return (await pipeline.create_session(TENANT, {"channel": "test"})).id


async def test_a_text_turn_commits_state_and_history(pipeline):
    sid = await new_session(pipeline)
    result = await pipeline.run_turn(TENANT, sid, TurnInput(text="my lamp arrived broken")).result()
    assert (result.turn, result.replayed) == (1, False) and result.reply
    stored = await pipeline.store.get(TENANT, sid)
    assert stored.turns == 1 and stored.state == result.state.model_dump()
    assert [(e["role"], e["text"], e["turn"]) for e in stored.history] == [
        ("user", "my lamp arrived broken", 1), ("assistant", result.reply, 1)]
    assert {"lock", "load", "commit", "total"} <= set(result.timings_ms)


@pytest.mark.parametrize("failing", ["explode", "crash"], ids=["encoder", "decoder"])
async def test_a_failed_turn_changes_nothing(pipeline, failing):
    sid = await new_session(pipeline)
    await pipeline.run_turn(TENANT, sid, TurnInput(text="hello")).result()
    before = await pipeline.store.get(TENANT, sid)
    with pytest.raises(RuntimeError, match="crashed"):
        await pipeline.run_turn(TENANT, sid, TurnInput(text=f"it will {failing} now"),
                                retry_key=RetryKey("k1", "f1")).result()
    assert await pipeline.store.get(TENANT, sid) == before
    assert await pipeline.store.get_idempotent(TENANT, sid, "k1") is None
    after = await pipeline.run_turn(TENANT, sid, TurnInput(text="my lamp arrived broken")).result()  # the lock was released
    assert after.turn == 2


async def test_an_idempotent_retry_is_answered_from_the_store(pipeline):
    sid = await new_session(pipeline)
    turn, key = TurnInput(text="my lamp arrived broken", fingerprint="f1"), RetryKey("k1", "f1")
    first = await pipeline.run_turn(TENANT, sid, turn, retry_key=key).result()
    again = await pipeline.run_turn(TENANT, sid, turn, retry_key=key).result()
    assert again.replayed and (again.turn, again.reply, again.state) == (first.turn, first.reply, first.state)
    assert pipeline.decoder.calls == 1 and (await pipeline.store.get(TENANT, sid)).turns == 1
    with pytest.raises(ParleyError) as reused:
        await pipeline.run_turn(TENANT, sid, TurnInput(text="something else", fingerprint="f2"),
                                retry_key=RetryKey("k1", "f2")).result()
    assert (reused.value.kind, reused.value.code) == ("invalid", "idempotency_key_reused")
    assert (await pipeline.store.get(TENANT, sid)).turns == 1


async def test_the_turn_counter_counts_committed_turns(pipeline):
    sid = await new_session(pipeline)
    turns = [(await pipeline.run_turn(TENANT, sid, TurnInput(text=text)).result()).turn
             for text in ("hello", "my lamp arrived broken", "thanks, bye")]
    stored = await pipeline.store.get(TENANT, sid)
    assert turns == [1, 2, 3] and stored.turns == 3 and stored.state["turns"] == 3
    assert [e["turn"] for e in stored.history] == [1, 1, 2, 2, 3, 3]


async def test_two_turns_of_one_session_are_serialised(pipeline):
    sid = await new_session(pipeline)
    pipeline.decoder.gate.clear()
    first = asyncio.create_task(pipeline.run_turn(TENANT, sid, TurnInput(text="hello")).result())
    await pipeline.decoder.wait_inside(1)
    second = asyncio.create_task(pipeline.run_turn(TENANT, sid, TurnInput(text="my lamp arrived broken")).result())
    for _ in range(100):  # however long the loop runs, the second turn waits on the session's lock
        await asyncio.sleep(0)
    assert pipeline.decoder.calls == 1
    pipeline.decoder.gate.set()
    results = await asyncio.wait_for(asyncio.gather(first, second), STUCK_S)
    assert [r.turn for r in results] == [1, 2] and pipeline.decoder.most_inside == 1
    stored = await pipeline.store.get(TENANT, sid)
    assert [(e["turn"], e["text"]) for e in stored.history if e["role"] == "user"] == [
        (1, "hello"), (2, "my lamp arrived broken")]


async def test_turns_of_different_sessions_run_in_parallel(pipeline):
    a, b = await new_session(pipeline), await new_session(pipeline)
    pipeline.decoder.gate.clear()
    turns = [asyncio.create_task(pipeline.run_turn(TENANT, sid, TurnInput(text="hello")).result()) for sid in (a, b)]
    await pipeline.decoder.wait_inside(2)  # both are decoding at once: neither waits for the other's lock
    pipeline.decoder.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*turns), STUCK_S)
    assert [r.turn for r in results] == [1, 1]
    assert [(await pipeline.store.get(TENANT, sid)).turns for sid in (a, b)] == [1, 1]


class EchoDecoder:
    """A Decoder that writes the policy's draft (from the prompt) word by word, so its replies pass the fact
    check; after the first word it waits for its gate."""

    wants_features = False

    def __init__(self, *, grounded_by_construction: bool) -> None:
        self.grounded_by_construction = grounded_by_construction
        self.gate = asyncio.Event()
        self.gate.set()
        self.at_gate = asyncio.Event()  # set when the first word is out and the rest waits for the gate

    async def stream(
        self, context: ReplyContext, *, max_new_tokens: int, stats: GenerationStats | None = None,
        sampling: Sampling = GREEDY,
    ) -> AsyncIterator[str]:
        draft = str(context.messages[0]["content"]).rsplit('exactly: "', 1)[1].removesuffix('"')
        for index, word in enumerate(draft.split(" ")):
            if index == 1:
                self.at_gate.set()
                await self.gate.wait()
            if stats is not None:
                stats.completion_tokens += 1
            yield word if index == 0 else " " + word

    async def aclose(self) -> None:
        """Nothing to stop."""


async def events_of(stream: TurnStream) -> list[TurnEvent]:
    return [event async for event in stream]


async def test_usage_counts_the_draft_sent_not_the_tokens_the_model_wrote(pipeline):
    """GatedDecoder's "Happy to help." asks for no order number, so the policy's question goes out instead."""
    result = await pipeline.respond(DialogueState(), [], TurnInput(text="my lamp arrived broken")).result()
    assert not result.grounded and result.reply.endswith("?")
    assert result.completion_tokens == tokens_in(result.reply, None) != 3


async def test_a_turn_input_gives_a_turn_result(pipeline):
    pipeline.decoder = EchoDecoder(grounded_by_construction=False)
    turn = TurnInput(text="my lamp arrived broken", options=ReplyOptions(n=2))
    result = await pipeline.respond(DialogueState(), [], turn).result()
    assert isinstance(result, TurnResult) and (result.turn, result.state.turns, result.replayed) == (1, 1, False)
    assert len(result.choices) == 2 and result.reply == result.choices[0].text and result.grounded
    assert result.completion_tokens == sum(choice.completion_tokens for choice in result.choices) > 0
    assert result.readings == {} and result.tool_call is None and "total" in result.timings_ms


async def test_a_reply_streams_as_tokens_then_done(pipeline):
    pipeline.decoder = EchoDecoder(grounded_by_construction=False)
    events = await events_of(pipeline.respond(DialogueState(), [], TurnInput(text="my lamp arrived broken")))
    *tokens, done = events
    assert tokens and all(isinstance(event, Token) for event in tokens) and isinstance(done, Done)
    assert "".join(token.text for token in tokens) == done.result.reply and done.result.grounded


class OpeningDecoder(EchoDecoder):
    """A causal LM's way with an opening: its stream starts with the opening, then it writes the draft's rest."""

    continues_opening = True

    def __init__(self) -> None:
        super().__init__(grounded_by_construction=False)
        self.openings: list[str] = []

    async def stream(
        self, context: ReplyContext, *, max_new_tokens: int, stats: GenerationStats | None = None,
        sampling: Sampling = GREEDY,
    ) -> AsyncIterator[str]:
        self.openings.append(context.opening)
        written = "".join([piece async for piece in super().stream(context, max_new_tokens=max_new_tokens)])
        yield context.opening + written.removeprefix(context.opening)


async def test_a_causal_lm_continues_the_drafts_first_words_and_usage_counts_them(pipeline):
    pipeline.decoder = decoder = OpeningDecoder()
    result = await pipeline.respond(DialogueState(), [], TurnInput(text="my lamp arrived broken")).result()
    assert result.grounded and decoder.openings == [" ".join(result.reply.split()[:OPENING_WORDS])]
    assert result.completion_tokens == tokens_in(result.reply, None) == len(result.reply.split())
    pipeline.decoder = echo = EchoDecoder(grounded_by_construction=False)  # a decoder that takes no opening
    seen = []
    echo_stream = echo.stream
    echo.stream = lambda context, **kw: (seen.append(context.opening), echo_stream(context, **kw))[1]
    await pipeline.respond(DialogueState(), [], TurnInput(text="my lamp arrived broken")).result()
    assert seen == [""]


async def test_a_reply_that_fails_the_fact_check_is_replaced_before_done(pipeline):
    # "Happy to help." does not ask for the order number the policy asks for.
    events = await events_of(pipeline.respond(DialogueState(), [], TurnInput(text="my lamp arrived broken")))
    *tokens, replace, done = events
    assert "".join(token.text for token in tokens) == "Happy to help."
    assert isinstance(replace, Replace) and isinstance(done, Done) and not done.result.grounded
    assert replace.text == done.result.reply != "Happy to help."


async def test_streamed_tokens_are_clipped_as_the_reply_is(pipeline):
    pipeline.decoder = EchoDecoder(grounded_by_construction=False)
    turn = TurnInput(text="my lamp arrived broken", options=ReplyOptions(max_tokens=3))
    *tokens, done = await events_of(pipeline.respond(DialogueState(), [], turn))
    assert "".join(token.text for token in tokens) == done.result.reply and len(done.result.reply.split()) == 3
    assert done.result.choices[0].finish_reason == "length"


async def test_a_replayed_turn_is_done_alone(pipeline):
    sid = await new_session(pipeline)
    turn, key = TurnInput(text="hello", fingerprint="f1"), RetryKey("k1", "f1")
    first = await pipeline.run_turn(TENANT, sid, turn, retry_key=key).result()
    [done] = await events_of(pipeline.run_turn(TENANT, sid, turn, retry_key=key))
    assert isinstance(done, Done) and done.result.replayed and done.result.choices == first.choices


def test_idempotency_records_of_every_format_replay():
    """A record as this contract writes it replays as the result it came from; one written before choices
    were stored (the native response of the time) replays as one choice that stopped."""
    result = TurnResult(turn=2, state=DialogueState(turns=2), action="respond", prompt_tokens=7, completion_tokens=3,
                        choices=[WrittenReply(text="Hi.", grounded=True, finish_reason="stop", completion_tokens=3)],
                        readings={"audio": [{"text": "hi there", "confidence": 0.9}],
                                  "image": [{"caption": "a box", "ocr_text": None, "labels": [], "barcodes": []}]})
    again = from_record(to_record(result))
    assert (again.reply, again.choices, again.transcript, again.images) == ("Hi.", result.choices, "hi there",
                                                                            result.images)
    assert again.replayed and (again.prompt_tokens, again.completion_tokens) == (7, 3)
    old = {"turn": 1, "reply": "Hello!", "action": "greet", "grounded": False, "transcript": None, "images": [],
           "state": DialogueState(turns=1).model_dump(), "replayed": False, "usage": {"completion_tokens": 2},
           "timings_ms": {"total": 5.0}}
    replayed = from_record(old)
    assert [(c.text, c.grounded, c.finish_reason) for c in replayed.choices] == [("Hello!", False, "stop")]
    assert replayed.replayed and replayed.transcript is None and replayed.readings == {}


def read_note(notes: list[bytes]) -> list[str]:
    """The test modality's encoder: a note's text, as read."""
    return [note.decode().upper() for note in notes]


NOTE = Modality(
    name="note", plural="notes", encoder="notes", single=False, max_items=lambda settings: 2,
    max_bytes=lambda settings: 100, decode=lambda data, settings: data, batch=lambda model, features: read_note,
    evidence=lambda text: [Evidence(text, "note")], summary=lambda text: {"text": text},
)


async def test_a_modality_is_registered_in_one_place(pipeline, monkeypatch):
    """A kind of media the app does not have, registered by this test alone: the request parser decodes it,
    its encoder reads it, the tracker takes its evidence and the result and history show it."""
    monkeypatch.setitem(MODALITIES, "note", NOTE)
    pipeline.encoders.media["note"] = MicroBatcher("notes", NOTE.batch(None, False), max_batch_size=8, max_wait_ms=0)
    turn = build_turn("my lamp arrived broken", {"note": [b"order a7q-4412"]}, Settings())
    assert turn.media == {"note": (b"order a7q-4412",)} and turn.modalities == ["text", "note"]
    sid = await new_session(pipeline)
    result = await pipeline.run_turn(TENANT, sid, turn).result()
    await pipeline.encoders.media.pop("note").aclose()
    assert result.readings == {"note": [{"text": "ORDER A7Q-4412"}]}
    assert result.state.slots["order_id"] == "A7Q-4412" and result.state.slot_sources["order_id"].modality == "note"
    user = (await pipeline.store.get(TENANT, sid)).history[0]
    assert user["modalities"] == ["text", "note"]


@pytest.mark.parametrize("live", [True, False], ids=["grounded-by-construction", "checked-first"])
async def test_openai_streaming_is_live_only_for_a_decoder_grounded_by_construction(pipeline, live):
    pipeline.decoder = decoder = EchoDecoder(grounded_by_construction=live)
    decoder.gate.clear()  # the decoder stops after its first word
    events = pipeline.respond(DialogueState(), [], TurnInput(text="my lamp arrived broken"))
    chunks = to_chunks(aiter(events), live=decoder.grounded_by_construction, model="parley",
                       target=ChatTarget(TENANT), include_usage=False)
    first = asyncio.ensure_future(anext(chunks))
    await decoder.at_gate.wait()
    if live:  # the first word goes out while the decoder still holds the rest
        await asyncio.wait_for(asyncio.shield(first), 60)
    else:  # however long the loop runs, a held-back reply sends nothing before it is checked
        for _ in range(100):
            await asyncio.sleep(0)
        assert not first.done()
    decoder.gate.set()
    sent = [await first] + [chunk async for chunk in chunks]
    contents = [chunk.choices[0].delta.content for chunk in sent if chunk.choices[0].delta.content]
    reply = (await events.result()).reply
    assert "".join(contents) == reply and sent[-1].choices[0].finish_reason == "stop"
    assert len(contents) == (len(reply.split(" ")) if live else 1)  # word by word, or the checked reply at once


class DelexicalisingDecoder:
    """A reply model that writes placeholders, as the FusedSeq2Seq does: the policy's draft (read from the
    prompt) with each value the decision gives replaced by its [placeholder], plus `extra`, one token per word."""

    wants_features = False
    grounded_by_construction = True

    def __init__(self, extra: str = "") -> None:
        self.extra = extra
        self.written = ""  # what it wrote, placeholders and all

    async def stream(
        self, context: ReplyContext, *, max_new_tokens: int, stats: GenerationStats | None = None,
        sampling: Sampling = GREEDY,
    ) -> AsyncIterator[str]:
        draft = str(context.messages[0]["content"]).rsplit('"', 2)[1]
        for name, value in sorted(context.values.items(), key=lambda item: -len(item[1])):
            draft = draft.replace(value, f"[{name}]")
        self.written = draft + self.extra
        for piece in self.written.split(" "):
            yield piece + " "

    async def aclose(self) -> None:
        """Nothing to stop."""


@pytest.mark.parametrize("extra, kept", [("", True), (" It arrives [eta].", False)], ids=["filled", "invented"])
async def test_placeholders_are_filled_from_the_decision_or_the_draft_is_sent(pipeline, extra, kept):
    pipeline.decoder = decoder = DelexicalisingDecoder(extra)
    sid = await new_session(pipeline)
    await pipeline.run_turn(TENANT, sid, TurnInput(text="I want to return my headphones")).result()
    events = await events_of(pipeline.run_turn(TENANT, sid, TurnInput(text="the order number is A7Q-4412")))
    streamed = [event.text for event in events if isinstance(event, Token)]
    assert isinstance(events[-1], Done)
    result = events[-1].result
    assert "[order_id]" in decoder.written and "A7Q-4412" not in decoder.written
    assert "A7Q-4412" in result.reply and "[" not in result.reply
    assert result.grounded is kept
    assert "".join(streamed).startswith(result.reply if kept else "")  # what streamed was filled, too
    assert "A7Q-4412" in "".join(streamed) and "[order_id]" not in "".join(streamed)


class CondolingDecoder:
    """A Decoder that offers condolences, then would go on for ever; counts the words it wrote. Its tokenizer
    counts words, so the pipeline can size the reply's budget by the draft."""

    wants_features = False

    def __init__(self) -> None:
        self.written, self.closed, self.budgets = 0, False, []

    @staticmethod
    def tokenizer(text: str, *, add_special_tokens: bool) -> dict:
        return {"input_ids": text.split()}

    async def stream(
        self, context: ReplyContext, *, max_new_tokens: int, stats: GenerationStats | None = None,
        sampling: Sampling = GREEDY,
    ) -> AsyncIterator[str]:
        self.budgets.append(max_new_tokens)
        try:
            while True:
                for piece in ("I'm ", "sorry ", "for ", "your ", "loss, ", "but "):
                    self.written += 1
                    yield piece
        finally:
            self.closed = True

    async def aclose(self) -> None:
        """Nothing to stop."""


async def test_a_reply_that_has_already_failed_the_fact_check_stops_there_and_the_draft_is_sent(pipeline):
    decoder = CondolingDecoder()
    writes = TurnPipeline(pipeline.store, pipeline.tracker, encoders=pipeline.encoders, decoder=decoder,
                          max_new_tokens=500)
    sid = await new_session(writes)
    result = await writes.run_turn(TENANT, sid, TurnInput(text="my lamp arrived broken")).result()
    assert decoder.closed and decoder.written == 5  # "...loss, ": the condolence is finished, decoding stops
    assert not result.grounded and "loss" not in result.reply  # the policy's own wording instead
    assert decoder.budgets == [len(result.reply.split()) * 3 // 2 + 16]  # sized by the draft, under the 500 cap


class RamblingDecoder(CondolingDecoder):
    """Writes the draft, then goes on with words of its own until its token budget runs out."""

    async def stream(
        self, context: ReplyContext, *, max_new_tokens: int, stats: GenerationStats | None = None,
        sampling: Sampling = GREEDY,
    ) -> AsyncIterator[str]:
        draft = str(context.messages[0]["content"]).rsplit('exactly: "', 1)[1].removesuffix('"')
        words = draft.split() + [f"and{i}" for i in range(max_new_tokens)]
        for word in words[:max_new_tokens]:
            if stats is not None:
                stats.completion_tokens += 1
            yield word + " "


async def test_a_rewording_that_runs_out_of_its_budget_is_replaced_by_the_draft(pipeline):
    writes = TurnPipeline(pipeline.store, pipeline.tracker, encoders=pipeline.encoders, decoder=RamblingDecoder(),
                          max_new_tokens=500)
    sid = await new_session(writes)
    result = await writes.run_turn(TENANT, sid, TurnInput(text="my lamp arrived broken")).result()
    assert not result.grounded and "and0" not in result.reply and result.choices[0].finish_reason == "stop"


def test_every_domain_draft_fits_the_budget_smollm2_gets_to_reword_it():
    """A reply cut at its budget gets the draft instead: the longest responses must fit, with room to spare."""
    tokenizer = AutoTokenizer.from_pretrained(default_decoder(Path.home() / ".cache" / "parley" / "models"))
    for name, intent in load_domain().intents.items():
        draft = intent.response.format(**dict.fromkeys(intent.required_slots, "A7Q-4412"))
        assert draft_budget(draft, tokenizer, CAUSAL_REPLY_TOKENS) >= tokens_in(draft, tokenizer) + 16, name
