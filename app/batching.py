"""Batching across sessions, kept out of model code: models only ever see ready batches.

- MicroBatcher: in front of an encoder. Concurrent requests wait up to `max_wait_ms` for
  company, then go through the model's `predict_batch` together (at most `max_batch_size`).
- ContinuousDecoder: in front of a local decoder (the causal LM, the FusedSeq2Seq). Sequences join the running batch between
  decoding steps and leave it when done (iteration-level scheduling); each sequence's
  tokens go to its own caller as they are produced.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from models.decoder import GREEDY, GenerationStats, ReplyContext, RowSampler, Sampling, TextStream, row_sampler
from models.prompt_lookup import PromptLookup
from models.registry import Placement

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")
# (model name, seconds, batch size) after each batch; (model name, depth) when a queue changes.
InferenceObserver = Callable[[str, float, int], None]
DepthObserver = Callable[[str, int], None]
MAX_DRAFT = 8  # draft tokens a row may bring to one verifying pass
FIRST_DRAFT = 4  # a row's first draft size; it grows by 2 while whole drafts are kept and shrinks to what was kept
# otherwise: on a 2-core CPU a pass over 1 + 8 tokens costs ~2.3x a one-token step, so drafts pay only when kept
VERIFY_TOKENS = 96  # tokens one pass may verify over the batch: at 16+ rows a CPU step is compute-bound, and drafts
# that are mostly rejected would slow every row down, so bigger batches bring shorter drafts (2 each at 32 rows).
# SmolLM2 continuing the draft's opening keeps most drafts: 16 long replies went 4.4 -> 5.3 turns/s from 48 to 96
PREFILL_TOKENS = 1024  # prompt tokens prefilled per round: a burst of 16 arrivals goes in 2-4 groups (about 0.4 s
# each on 2 cores), so its first replies start sooner, at little cost to prefill's efficiency; and a long prompt
# beside running rows goes in slices of this many, those rows taking a pass after each
PREFILL_COLUMNS = 16  # but at least this many columns of each prompt per round, so many arrivals still finish soon


def _ignore(*_: object) -> None:
    return None


class BatchMismatch(RuntimeError):
    """A model returned a different number of outputs than it was given inputs."""


def content_key(model: str) -> Callable[[Any], str]:
    """Key of an encoder input by what it holds: sha256 of an array's or an image's pixels, shape and dtype, and the
    model that reads it. A stateless OpenAI client re-sends the same photo or clip on every turn."""
    def key(item: Any) -> str:
        data = np.ascontiguousarray(np.asarray(item))  # a PIL image reads as its (H, W, C) pixels
        digest = hashlib.sha256(data.tobytes())
        digest.update(repr((data.shape, data.dtype.str, model)).encode())
        return digest.hexdigest()
    return key


class OutputCache(Generic[Out]):
    """The outputs of the last `entries` distinct inputs (least recently used goes first): bounded memory."""

    def __init__(self, entries: int) -> None:
        assert entries >= 1
        self.entries = entries
        self._outputs: OrderedDict[str, Out] = OrderedDict()

    def get(self, key: str) -> Out | None:
        output = self._outputs.get(key)
        if output is not None:
            self._outputs.move_to_end(key)
        return output

    def put(self, key: str, output: Out) -> None:
        self._outputs[key] = output
        self._outputs.move_to_end(key)
        while len(self._outputs) > self.entries:
            self._outputs.popitem(last=False)


class MicroBatcher(Generic[In, Out]):
    """`await batcher.submit(item)` -> that item's output, computed in a batch with its neighbours in time.

    With a `cache_key` (e.g. content_key), an item whose key was seen among the last `cache_entries` gets the
    output computed then, without running the model."""

    def __init__(
        self, name: str, predict_batch: Callable[[list[In]], list[Out]], *, max_batch_size: int, max_wait_ms: float,
        on_batch: InferenceObserver = _ignore, on_depth: DepthObserver = _ignore,
        cache_key: Callable[[In], str] | None = None, cache_entries: int = 0,
    ) -> None:
        assert max_batch_size >= 1 and max_wait_ms >= 0
        self.name, self.predict_batch = name, predict_batch
        self.max_batch_size, self.max_wait_s = max_batch_size, max_wait_ms / 1000
        self.on_batch, self.on_depth = on_batch, on_depth
        self.cache_key = cache_key
        self._cache: OutputCache[Out] | None = OutputCache(cache_entries) if cache_key and cache_entries else None
        self._queue: asyncio.Queue[tuple[In, asyncio.Future[Out]]] | None = None
        self._worker: asyncio.Task | None = None

    async def submit(self, item: In) -> Out:
        if self._cache is None or self.cache_key is None:
            return await self._computed(item)
        key = await asyncio.to_thread(self.cache_key, item)  # hashing a photo's pixels takes milliseconds
        if (output := self._cache.get(key)) is None:
            output = await self._computed(item)
            self._cache.put(key, output)
        return output

    async def _computed(self, item: In) -> Out:
        queue = self._queue
        if self._worker is None or queue is None:  # started on first use, on the loop that serves requests
            self._queue = queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._run(), name=f"batcher-{self.name}")
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        queue.put_nowait((item, future))
        self.on_depth(self.name, queue.qsize())
        return await future

    async def map(self, items: list[In]) -> list[Out]:
        """Several items of one request; they may share a batch with other requests' items."""
        return list(await asyncio.gather(*(self.submit(item) for item in items)))

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            pending = [await self._queue.get()]
            deadline = time.monotonic() + self.max_wait_s
            while len(pending) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    pending.append(self._queue.get_nowait() if remaining <= 0 else
                                   await asyncio.wait_for(self._queue.get(), remaining))
                except (asyncio.QueueEmpty, TimeoutError):
                    break
            self.on_depth(self.name, self._queue.qsize())
            await self._predict([p for p in pending if not p[1].cancelled()])

    async def _predict(self, pending: list[tuple[In, asyncio.Future[Out]]]) -> None:
        if not pending:
            return
        started = time.perf_counter()
        try:
            outputs = await asyncio.to_thread(self.predict_batch, [item for item, _ in pending])
            if len(outputs) != len(pending):
                raise BatchMismatch(f"{self.name} returned {len(outputs)} outputs for {len(pending)} inputs")
            self.on_batch(self.name, time.perf_counter() - started, len(pending))
        except Exception as exc:  # the whole batch fails together; each caller gets the error
            for _, future in pending:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), output in zip(pending, outputs, strict=True):
            if not future.done():
                future.set_result(output)

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None


_END = object()  # a sequence is finished


class StepDecoder(Protocol):
    """A model decoded one step at a time over a batch: models/decoder.py CausalLMDecoder (requests are prompt
    ids) and models/fused_decoder.py FusedSeq2SeqDecoder (requests carry the decision and features). A batch
    is the model's own; all this scheduler reads of it is `next_ids` (B,)."""

    tokenizer: Any
    placement: Placement
    stop_ids: set[int]

    def prepare(self, context: ReplyContext) -> Any: ...  # one reply's request; len() = its prompt tokens
    def lookup_ids(self, request: Any) -> list[int]: ...  # the tokens a reply may copy (prompt-lookup drafts)
    def warm_up(self) -> None: ...
    def text_stream(self, context: ReplyContext) -> TextStream: ...  # the reply's text, its opening first
    # a prefill fed `columns` prompt tokens at a time (its `width` in all); the batch once all are in, else None
    def start_prefill(self, requests: list[Any], samplers: list[RowSampler | None] | None = None) -> Any: ...
    def advance(self, prefill: Any, columns: int) -> Any | None: ...
    # one pass: each row's newest token and its draft; the batch after it and each row's tokens kept
    def verify(self, batch: Any, drafts: list[list[int]], samplers: list[RowSampler | None] | None = None,
               ) -> tuple[Any, list[list[int]]]: ...
    def merge(self, first: Any, second: Any) -> Any: ...
    def select(self, batch: Any, rows: list[int]) -> Any: ...


@dataclass
class _Sequence:
    """One reply being generated; owned by the decoding thread once submitted."""

    prompt: Any  # the model's request (StepDecoder.prepare)
    max_new_tokens: int
    lookup: PromptLookup  # the prompt and the reply so far, where greedy rows find their draft tokens
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue  # str pieces, then _END or an exception
    text: TextStream
    stats: GenerationStats
    sampler: RowSampler | None = None  # None: greedy
    draft_size: int = FIRST_DRAFT  # how many draft tokens the row proposes next
    drafted: int = 0  # how many it proposed to the current pass
    produced: int = 0
    cancelled: bool = False  # set by the caller's side when it stops listening
    finished: bool = field(default=False)

    def send(self, item: object) -> None:
        try:
            self.loop.call_soon_threadsafe(self.out.put_nowait, item)
        except RuntimeError:  # the caller's loop has closed (shutdown): nobody is left to tell
            self.cancelled = True


class ContinuousDecoder:
    """The Decoder the pipeline uses for a local model: one thread runs every decoding step.

    Between two steps the thread takes in waiting sequences (one prefill for all of them, merged
    into the running batch, at most `max_batch_size` rows) and drops the ones that finished.
    """

    def __init__(
        self, model: StepDecoder, *, max_batch_size: int, on_batch: InferenceObserver = _ignore,
        on_depth: DepthObserver = _ignore,
    ) -> None:
        assert max_batch_size >= 1
        self.model, self.max_batch_size = model, max_batch_size
        self.wants_features: bool = getattr(model, "wants_features", False)  # the fused model may read features
        self.grounded_by_construction: bool = getattr(model, "grounded_by_construction", False)
        self.max_reply_tokens: int | None = getattr(model, "max_reply_tokens", None)
        self.continues_opening: bool = getattr(model, "continues_opening", False)  # a causal LM's reply continues one
        self.on_batch, self.on_depth = on_batch, on_depth
        self._inbox: queue.Queue[_Sequence | None] = queue.Queue()
        self._waiting: deque[_Sequence] = deque()  # taken from the inbox, not yet prefilled (the thread's own)
        self._thread = threading.Thread(target=self._run, name="decoder", daemon=True)
        self._thread.start()

    @property
    def tokenizer(self):  # noqa: ANN201 - a transformers tokenizer: replies are counted in its tokens
        return self.model.tokenizer

    async def stream(
        self, context: ReplyContext, *, max_new_tokens: int, stats: GenerationStats | None = None,
        sampling: Sampling = GREEDY,
    ) -> AsyncIterator[str]:
        prompt = await asyncio.to_thread(self.model.prepare, context)
        sequence = _Sequence(prompt, max_new_tokens, PromptLookup(self.model.lookup_ids(prompt)),
                             asyncio.get_running_loop(), asyncio.Queue(),
                             self.model.text_stream(context), stats if stats is not None else GenerationStats(),
                             row_sampler(sampling, self.model.placement.device))
        sequence.stats.prompt_tokens = len(prompt)
        self._inbox.put(sequence)
        self.on_depth("decoder", self._inbox.qsize())
        try:
            while (item := await sequence.out.get()) is not _END:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            sequence.cancelled = True  # a caller that stops early frees its row at the next step

    async def aclose(self) -> None:
        self._inbox.put(None)
        await asyncio.to_thread(self._thread.join, 10)

    # --- the decoding thread ---------------------------------------------------------

    def _run(self) -> None:
        # Warm up here, on the thread that decodes: a warm-up forward pass on another thread left every
        # later step on this one about 1.7x slower (24 -> 40 ms at batch 1 here).
        self.model.warm_up()
        batch: Any = None  # the model's batch of running rows
        rows: list[_Sequence] = []
        prefill: Any = None  # the arrivals being prefilled, a slice per round while others decode
        joining: list[_Sequence] = []
        while True:
            if prefill is None:
                arrivals = self._take_arrivals(block=not rows, room=self.max_batch_size - len(rows))
                if arrivals is None:  # closing: callers still waiting get an error, not silence
                    for sequence in rows:
                        sequence.send(RuntimeError("the decoder was shut down"))
                    return
                if arrivals:
                    joining = arrivals
                    prefill = self.model.start_prefill([s.prompt for s in arrivals], [s.sampler for s in arrivals])
            if prefill is None and not rows:
                continue
            try:
                started, running, prefilled = time.perf_counter(), bool(rows), False
                if prefill is not None:
                    # Alone, a prefill runs whole. Beside running rows, a slice of its columns per round, each round
                    # also one pass for those rows: a long prompt no longer stalls every reply in the batch.
                    columns = max(PREFILL_COLUMNS, PREFILL_TOKENS // len(joining)) if running else prefill.width
                    if (fresh := self.model.advance(prefill, columns)) is not None:
                        batch = fresh if batch is None else self.model.merge(batch, fresh)
                        rows += joining
                        self._deliver(joining, [[t] for t in fresh.next_ids.tolist()])
                        prefill, joining, prefilled = None, [], True
                # A burst of arrivals is prefilled a group after another, each group's first tokens going out as it
                # is done; the running rows take their pass once no group waits.
                if running and not (prefilled and self._waiting):
                    assert batch is not None  # `rows` were running: they were prefilled into it
                    batch, chosen = self.model.verify(batch, self._drafts(rows), [s.sampler for s in rows])
                    self._deliver(rows, chosen)
                self.on_batch("decoder", time.perf_counter() - started, len(rows))
            except Exception as exc:  # a failed step fails every sequence in it
                log.exception("decoding step failed for %d sequences", len(rows) + len(joining))
                for sequence in rows + joining:
                    sequence.send(exc)
                batch, rows, prefill, joining = None, [], None, []
                continue
            keep = [i for i, s in enumerate(rows) if not (s.finished or s.cancelled)]
            if len(keep) < len(rows):
                assert batch is not None  # it holds `rows`
                batch = self.model.select(batch, keep) if keep else None
                rows = [rows[i] for i in keep]

    def _take_arrivals(self, *, block: bool, room: int) -> list[_Sequence] | None:
        """The oldest waiting sequences that fit in the batch (at most `room`) and bring at most PREFILL_TOKENS
        prompt tokens together (at least one): a burst of arrivals is prefilled a group per round, so the first
        ones start decoding while the rest wait. None when the decoder is closing and nothing waits."""
        while True:
            try:
                item = self._inbox.get(block=block and not self._waiting)
            except queue.Empty:
                break
            if item is None:
                if not self._waiting:
                    return None
                self._inbox.put(None)  # close once the waiting ones are in
                break
            self._waiting.append(item)
        arrivals: list[_Sequence] = []
        tokens = 0
        while self._waiting and len(arrivals) < room:
            if self._waiting[0].cancelled:
                self._waiting.popleft()
                continue
            size = len(self._waiting[0].prompt)
            if arrivals and tokens + size > PREFILL_TOKENS:
                break
            arrivals.append(self._waiting.popleft())
            tokens += size
        self.on_depth("decoder", self._inbox.qsize() + len(self._waiting))
        return arrivals

    def _drafts(self, rows: list[_Sequence]) -> list[list[int]]:
        """Each row's draft tokens for the next pass: greedy rows only (a sampled token cannot be checked against
        an argmax), never past the row's token limit."""
        most = VERIFY_TOKENS // len(rows) - 1
        drafts = [[] if s.sampler is not None else
                  s.lookup.propose(min(most, s.draft_size, s.max_new_tokens - s.produced - 1)) for s in rows]
        for sequence, draft in zip(rows, drafts, strict=True):
            sequence.drafted = len(draft)
        return drafts

    def _deliver(self, sequences: list[_Sequence], chosen: list[list[int]]) -> None:
        """Each sequence's new tokens, sent to its caller as one piece (one hand-off to its loop per pass)."""
        for sequence, token_ids in zip(sequences, chosen, strict=True):
            if sequence.finished:
                continue
            sequence.lookup.extend(token_ids)
            if sequence.drafted:  # the tokens before the last are the draft's kept ones
                kept = len(token_ids) - 1
                grown = min(MAX_DRAFT, sequence.draft_size + 2)
                sequence.draft_size, sequence.drafted = grown if kept == sequence.drafted else max(1, kept), 0
            pieces, done = [], False
            for token_id in token_ids:
                if token_id in self.model.stop_ids:
                    done = True
                    break
                sequence.produced += 1
                pieces.append(sequence.text.push(token_id))
                if sequence.produced >= sequence.max_new_tokens:
                    done = True
                    break
            sequence.stats.completion_tokens = sequence.produced
            if piece := "".join(pieces):
                sequence.send(piece)
            if done:
                self._finish(sequence)

    @staticmethod
    def _finish(sequence: _Sequence) -> None:
        sequence.finished = True
        sequence.send(_END)
