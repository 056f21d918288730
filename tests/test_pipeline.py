"""TurnPipeline.run_turn on the in-memory store, with small encoders and a decoder of this file's own that
implement the pipeline's Protocols (no mock of the store): what a turn commits, what a failed turn leaves,
idempotent replays, the turn counter, and how turns of one session and of different sessions interleave.
The real default domain and policy run; the encoders and decoder are fakes, so replies are the policy's."""

import asyncio
import hashlib
from collections.abc import AsyncIterator

import numpy as np
import pytest

from app.batching import MicroBatcher
from app.dialogue.domain import load_domain
from app.dialogue.sentiment import SentimentAnalyzer
from app.dialogue.tracker import DialogueTracker, IntentClassifier
from app.errors import ApiError
from app.memory_store import InMemorySessionStore
from app.pipeline import Encoders, RetryKey, TurnPipeline, UserTurn
from models.decoder import GREEDY, GenerationStats, ReplyContext, Sampling

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

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
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
                        speech=MicroBatcher("speech", no_media, **batched),
                        vision=MicroBatcher("vision", no_media, **batched))
    built = TurnPipeline(InMemorySessionStore(), tracker, encoders=encoders, decoder=GatedDecoder(), max_new_tokens=8)
    yield built
    for batcher in (encoders.text, encoders.speech, encoders.vision):
        await batcher.aclose()


async def new_session(pipeline: TurnPipeline) -> str:
    return (await pipeline.create_session(TENANT, {"channel": "test"})).id


async def test_a_text_turn_commits_state_and_history(pipeline):
    sid = await new_session(pipeline)
    result = await pipeline.run_turn(TENANT, sid, UserTurn(text="my lamp arrived broken"))
    assert (result.turn, result.replayed) == (1, False) and result.reply
    stored = await pipeline.store.get(TENANT, sid)
    assert stored.turns == 1 and stored.state == result.state.model_dump()
    assert [(e["role"], e["text"], e["turn"]) for e in stored.history] == [
        ("user", "my lamp arrived broken", 1), ("assistant", result.reply, 1)]
    assert {"lock", "load", "commit", "total"} <= set(result.timings_ms)


@pytest.mark.parametrize("failing", ["explode", "crash"], ids=["encoder", "decoder"])
async def test_a_failed_turn_changes_nothing(pipeline, failing):
    sid = await new_session(pipeline)
    await pipeline.run_turn(TENANT, sid, UserTurn(text="hello"))
    before = await pipeline.store.get(TENANT, sid)
    with pytest.raises(RuntimeError, match="crashed"):
        await pipeline.run_turn(TENANT, sid, UserTurn(text=f"it will {failing} now"),
                                retry_key=RetryKey("k1", "f1"))
    assert await pipeline.store.get(TENANT, sid) == before
    assert await pipeline.store.get_idempotent(TENANT, sid, "k1") is None
    after = await pipeline.run_turn(TENANT, sid, UserTurn(text="my lamp arrived broken"))  # the lock was released
    assert after.turn == 2


async def test_an_idempotent_retry_is_answered_from_the_store(pipeline):
    sid = await new_session(pipeline)
    turn, key = UserTurn(text="my lamp arrived broken", fingerprint="f1"), RetryKey("k1", "f1")
    first = await pipeline.run_turn(TENANT, sid, turn, retry_key=key)
    again = await pipeline.run_turn(TENANT, sid, turn, retry_key=key)
    assert again.replayed and (again.turn, again.reply, again.state) == (first.turn, first.reply, first.state)
    assert pipeline.decoder.calls == 1 and (await pipeline.store.get(TENANT, sid)).turns == 1
    with pytest.raises(ApiError) as reused:
        await pipeline.run_turn(TENANT, sid, UserTurn(text="something else", fingerprint="f2"),
                                retry_key=RetryKey("k1", "f2"))
    assert (reused.value.status, reused.value.code) == (422, "idempotency_key_reused")
    assert (await pipeline.store.get(TENANT, sid)).turns == 1


async def test_the_turn_counter_counts_committed_turns(pipeline):
    sid = await new_session(pipeline)
    turns = [(await pipeline.run_turn(TENANT, sid, UserTurn(text=text))).turn
             for text in ("hello", "my lamp arrived broken", "thanks, bye")]
    stored = await pipeline.store.get(TENANT, sid)
    assert turns == [1, 2, 3] and stored.turns == 3 and stored.state["turns"] == 3
    assert [e["turn"] for e in stored.history] == [1, 1, 2, 2, 3, 3]


async def test_two_turns_of_one_session_are_serialised(pipeline):
    sid = await new_session(pipeline)
    pipeline.decoder.gate.clear()
    first = asyncio.create_task(pipeline.run_turn(TENANT, sid, UserTurn(text="hello")))
    await pipeline.decoder.wait_inside(1)
    second = asyncio.create_task(pipeline.run_turn(TENANT, sid, UserTurn(text="my lamp arrived broken")))
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
    turns = [asyncio.create_task(pipeline.run_turn(TENANT, sid, UserTurn(text="hello"))) for sid in (a, b)]
    await pipeline.decoder.wait_inside(2)  # both are decoding at once: neither waits for the other's lock
    pipeline.decoder.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*turns), STUCK_S)
    assert [r.turn for r in results] == [1, 1]
    assert [(await pipeline.store.get(TENANT, sid)).turns for sid in (a, b)] == [1, 1]


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
    result = await writes.run_turn(TENANT, sid, UserTurn(text="my lamp arrived broken"))
    assert decoder.closed and decoder.written == 5  # "...loss, ": the condolence is finished, decoding stops
    assert not result.grounded and "loss" not in result.reply  # the policy's own wording instead
    assert decoder.budgets == [len(result.reply.split()) * 3 // 2 + 16]  # sized by the draft, under the 500 cap
