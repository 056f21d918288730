import asyncio
import threading

import numpy as np
import pytest
from PIL import Image

from app.batching import PREFILL_TOKENS, BatchMismatch, ContinuousDecoder, MicroBatcher, content_key
from models.decoder import GREEDY, CausalLMDecoder, GenerationStats, ReplyContext, Sampling, TextStream
from models.registry import resolve_placement
from tests.factories import tiny_causal_lm

CONVERSATIONS = [
    [{"role": "user", "content": "what was my order number?"}],
    [{"role": "user", "content": "hello, my lamp arrived broken"}],
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "i would like a refund for my headphones"}],
    [{"role": "user", "content": "thank you goodbye"}],
]


class Recorder:
    def __init__(self) -> None:
        self.batches: list[tuple[str, int]] = []

    def __call__(self, model: str, seconds: float, size: int) -> None:
        assert seconds >= 0
        self.batches.append((model, size))


# --- MicroBatcher ----------------------------------------------------------------------


async def test_concurrent_requests_share_one_batch_and_get_their_own_outputs():
    seen = Recorder()
    batcher = MicroBatcher("double", lambda xs: [x * 2 for x in xs], max_batch_size=8, max_wait_ms=50, on_batch=seen)
    try:
        results = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
    finally:
        await batcher.aclose()
    assert results == [0, 2, 4, 6, 8]
    assert seen.batches == [("double", 5)]


async def test_batches_never_exceed_max_batch_size():
    sizes = []

    def predict(xs):
        sizes.append(len(xs))
        return xs

    batcher = MicroBatcher("same", predict, max_batch_size=3, max_wait_ms=20)
    try:
        assert await batcher.map(list(range(10))) == list(range(10))
    finally:
        await batcher.aclose()
    assert max(sizes) == 3 and sum(sizes) == 10


async def test_a_model_returning_the_wrong_number_of_outputs_fails_the_whole_batch():
    batcher = MicroBatcher("broken", lambda xs: xs[:-1], max_batch_size=4, max_wait_ms=50)
    try:
        results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    finally:
        await batcher.aclose()
    assert all(isinstance(r, BatchMismatch) for r in results)


async def test_a_failing_batch_does_not_stop_the_next_one():
    def predict(xs):
        if "bad" in xs:
            raise ValueError("cannot read this")
        return [x.upper() for x in xs]

    batcher = MicroBatcher("upper", predict, max_batch_size=4, max_wait_ms=0)
    try:
        with pytest.raises(ValueError, match="cannot read"):
            await batcher.submit("bad")
        assert await batcher.submit("ok") == "OK"
    finally:
        await batcher.aclose()


async def test_media_sent_again_is_answered_from_the_cache_and_the_oldest_entry_goes_first():
    seen: list[int] = []

    def mean(clips: list[np.ndarray]) -> list[float]:
        seen.extend(len(c) for c in clips)
        return [float(c.mean()) for c in clips]

    batcher = MicroBatcher("speech", mean, max_batch_size=4, max_wait_ms=0, cache_key=content_key("whisper"),
                           cache_entries=2)
    one, two, three = (np.full(n, n, dtype=np.float32) for n in (1, 2, 3))
    try:
        assert [await batcher.submit(c) for c in (one, one.copy(), two)] == [1.0, 1.0, 2.0]
        assert seen == [1, 2]  # the same samples in another array: not run again
        await batcher.submit(three)  # the cache holds two: `one`, used least recently, goes
        await batcher.submit(two)
        await batcher.submit(one)
    finally:
        await batcher.aclose()
    assert seen == [1, 2, 3, 1]


def test_content_keys_tell_pixels_and_models_apart():
    red, blue = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    key = content_key("vision-a")
    assert key(red) == key(Image.new("RGB", (8, 8), "red"))
    assert key(red) != key(blue)
    assert key(red) != content_key("vision-b")(red)
    assert key(np.zeros(4, np.float32)) != key(np.zeros(2, np.float64))  # the same bytes, other samples


# --- ContinuousDecoder ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> CausalLMDecoder:
    path = tiny_causal_lm(tmp_path_factory.mktemp("lm"))
    return CausalLMDecoder.load(str(path), placement=resolve_placement("cpu"), offline=True)


def alone(model: CausalLMDecoder, messages, max_new_tokens: int) -> str:
    """Reference: the sequence decoded by itself, step by step."""
    batch = model.prefill([model.prompt_ids(messages)])
    text, produced = TextStream(model.tokenizer), []
    while len(produced) < max_new_tokens and batch.next_ids.item() not in model.stop_ids:
        produced.append(text.push(batch.next_ids.item()))
        batch = model.step(batch)
    return "".join(produced)


async def collect(decoder: ContinuousDecoder, messages, max_new_tokens: int, stats=None) -> str:
    return "".join([p async for p in decoder.stream(ReplyContext(messages), max_new_tokens=max_new_tokens,
                                                    stats=stats)])


async def test_sequences_join_a_running_batch_and_each_reply_is_what_it_would_be_alone(tiny_lm):
    seen, others_waiting = Recorder(), threading.Event()

    def hold_after_first_step(model: str, seconds: float, size: int) -> None:
        # The decoder thread waits after the first reply's first step until the other three are queued, so
        # they join a running batch however fast or loaded the machine is.
        seen(model, seconds, size)
        if len(seen.batches) == 1:
            assert others_waiting.wait(30), "the other sequences never arrived"

    def on_depth(model: str, depth: int) -> None:
        if depth == len(CONVERSATIONS) - 1:
            others_waiting.set()

    decoder = ContinuousDecoder(tiny_lm, max_batch_size=8, on_batch=hold_after_first_step, on_depth=on_depth)
    try:
        first = decoder.stream(ReplyContext(CONVERSATIONS[0]), max_new_tokens=60)
        started = await anext(first)  # the first reply is being decoded when the others arrive

        async def rest() -> str:
            return started + "".join([p async for p in first])

        replies = await asyncio.gather(rest(), *(collect(decoder, m, 12) for m in CONVERSATIONS[1:]))
    finally:
        await decoder.aclose()
    assert replies == [alone(tiny_lm, CONVERSATIONS[0], 60)] + [alone(tiny_lm, m, 12) for m in CONVERSATIONS[1:]]
    assert max(size for _, size in seen.batches) == len(CONVERSATIONS)  # steps really were shared


async def test_batch_size_is_capped_and_everyone_is_served(tiny_lm):
    seen = Recorder()
    decoder = ContinuousDecoder(tiny_lm, max_batch_size=2, on_batch=seen)
    try:
        replies = await asyncio.gather(*(collect(decoder, m, 6) for m in CONVERSATIONS))
    finally:
        await decoder.aclose()
    assert replies == [alone(tiny_lm, m, 6) for m in CONVERSATIONS]
    assert max(size for _, size in seen.batches) == 2


async def test_stats_count_prompt_and_reply_tokens(tiny_lm):
    decoder = ContinuousDecoder(tiny_lm, max_batch_size=4)
    stats = GenerationStats()
    try:
        reply = await collect(decoder, CONVERSATIONS[0], 5, stats=stats)
    finally:
        await decoder.aclose()
    assert stats.prompt_tokens == len(tiny_lm.prompt_ids(CONVERSATIONS[0]))
    assert 1 <= stats.completion_tokens <= 5
    assert reply == alone(tiny_lm, CONVERSATIONS[0], 5)


async def test_a_caller_that_stops_listening_leaves_the_batch(tiny_lm):
    seen = Recorder()
    decoder = ContinuousDecoder(tiny_lm, max_batch_size=4, on_batch=seen)
    try:
        abandoned = decoder.stream(ReplyContext(CONVERSATIONS[1]), max_new_tokens=200)
        await anext(abandoned)
        await abandoned.aclose()  # e.g. a client that went away
        reply = await collect(decoder, CONVERSATIONS[0], 40)
    finally:
        await decoder.aclose()
    assert reply == alone(tiny_lm, CONVERSATIONS[0], 40)
    assert seen.batches[-1][1] == 1  # the abandoned sequence no longer takes a row


async def test_each_sequence_samples_with_its_own_settings_and_greedy_ones_are_unchanged(tiny_lm):
    decoder = ContinuousDecoder(tiny_lm, max_batch_size=8)

    async def reply(messages, sampling: Sampling) -> str:
        return "".join([p async for p in decoder.stream(ReplyContext(messages), max_new_tokens=12, sampling=sampling)])

    hot = Sampling(temperature=1.5, seed=21)
    try:
        together = await asyncio.gather(reply(CONVERSATIONS[0], GREEDY), reply(CONVERSATIONS[1], hot),
                                        reply(CONVERSATIONS[2], GREEDY))
        again = await reply(CONVERSATIONS[1], hot)
        other_seeds = [await reply(CONVERSATIONS[1], Sampling(temperature=1.5, seed=seed)) for seed in (22, 23)]
    finally:
        await decoder.aclose()
    assert together[0] == alone(tiny_lm, CONVERSATIONS[0], 12) and together[2] == alone(tiny_lm, CONVERSATIONS[2], 12)
    assert again == together[1]  # the seed repeats the reply, alone or in a batch
    assert any(text != together[1] for text in other_seeds)


async def test_drafts_from_a_reply_that_repeats_itself_save_passes_and_change_no_token(tiny_lm):
    # A random tiny LM soon loops, so prompt lookup finds the loop in the reply so far and its drafts are accepted.
    seen = Recorder()
    decoder = ContinuousDecoder(tiny_lm, max_batch_size=4, on_batch=seen)
    stats = [GenerationStats() for _ in CONVERSATIONS[:2]]
    try:
        replies = await asyncio.gather(*(collect(decoder, m, 60, stats=s) for m, s in zip(CONVERSATIONS[:2], stats, strict=True)))
    finally:
        await decoder.aclose()
    assert replies == [alone(tiny_lm, m, 60) for m in CONVERSATIONS[:2]]
    assert [s.completion_tokens for s in stats] == [60, 60]
    assert len(seen.batches) < 60  # a prefill, then passes that each kept several tokens for some row


async def beside_a_running_reply(decoder: ContinuousDecoder, max_new_tokens: int, others) -> list[str]:
    """The first conversation's reply, started alone, then `others` ((messages, max_new_tokens) each), sent once
    its first piece is out; every reply, the first one first. Closes the decoder."""
    try:
        first = decoder.stream(ReplyContext(CONVERSATIONS[0]), max_new_tokens=max_new_tokens)
        started = await anext(first)

        async def rest() -> str:
            return started + "".join([p async for p in first])

        return list(await asyncio.gather(rest(), *(collect(decoder, m, n) for m, n in others)))
    finally:
        await decoder.aclose()


async def test_a_burst_of_arrivals_is_prefilled_a_group_after_another_before_the_next_pass(tiny_lm, monkeypatch):
    """Groups of at most PREFILL_TOKENS prompt tokens, oldest first, back to back: each group's first tokens go
    out as it is done, and the running reply takes its next pass once no group waits."""
    passes, queued = [], threading.Event()
    advance, verify = tiny_lm.advance, tiny_lm.verify

    def prefilled(prefill, columns):
        passes.append(("prefill", int(prefill.ids.shape[0])))
        return advance(prefill, columns)

    def verified(batch, drafts, samplers=None):
        passes.append(("verify", batch.size))
        return verify(batch, drafts, samplers)

    def hold_after_first_step(model: str, seconds: float, size: int) -> None:
        if passes == [("prefill", 1), ("verify", 1), ("prefill", 1)]:  # warmed up, the first reply prefilled
            assert queued.wait(30), "the burst never arrived"

    burst = [[{"role": "user", "content": f"my order number is A7Q-441{i}, where is it? " * 3}] for i in range(3)]
    sizes = [len(tiny_lm.prompt_ids(m)) for m in burst]
    monkeypatch.setattr("app.batching.PREFILL_TOKENS", sizes[0] + sizes[1])  # the first two fit, the third not
    monkeypatch.setattr(tiny_lm, "advance", prefilled)
    monkeypatch.setattr(tiny_lm, "verify", verified)
    decoder = ContinuousDecoder(tiny_lm, max_batch_size=4, on_batch=hold_after_first_step,
                                on_depth=lambda _, depth: queued.set() if depth == 3 else None)
    replies = await beside_a_running_reply(decoder, 30, [(m, 10) for m in burst])
    assert passes[3:6] == [("prefill", 2), ("prefill", 1), ("verify", 4)]
    assert replies == [alone(tiny_lm, CONVERSATIONS[0], 30), *(alone(tiny_lm, m, 10) for m in burst)]


async def test_a_long_prompt_joins_in_slices_beside_a_running_reply_and_both_decode_as_alone(tiny_lm, monkeypatch):
    slices, queued = [], threading.Event()
    advance = tiny_lm.advance

    def spy(prefill, columns):
        slices.append((prefill.width, columns))
        return advance(prefill, columns)

    def hold_after_first_step(model: str, seconds: float, size: int) -> None:
        if len(slices) == 2:  # warmed up, the first reply prefilled: the long prompt arrives while it decodes
            assert queued.wait(30), "the long prompt never arrived"

    monkeypatch.setattr(tiny_lm, "advance", spy)
    long = [{"role": "user", "content": "my order number is A7Q-4412 " * (PREFILL_TOKENS // 8)}]
    decoder = ContinuousDecoder(tiny_lm, max_batch_size=4, on_batch=hold_after_first_step,
                                on_depth=lambda _, depth: queued.set() if depth == 1 else None)
    replies = await beside_a_running_reply(decoder, 80, [(long, 10)])
    width = len(tiny_lm.prompt_ids(long))
    assert width > PREFILL_TOKENS  # a slice per round, the reply beside it
    assert slices[2:] == [(width, PREFILL_TOKENS)] * -(-width // PREFILL_TOKENS)
    assert replies == [alone(tiny_lm, CONVERSATIONS[0], 80), alone(tiny_lm, long, 10)]
