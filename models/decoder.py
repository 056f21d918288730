"""Reply generation with a causal LM, one step at a time over a batch of sequences.

The model knows nothing of requests or scheduling. It turns chat messages into
prompt ids, prefills a batch of prompts, advances a batch by one token, and
merges or narrows batches. app/batching.py decides which sequences share each
step, so replies of different sessions are decoded together.

Batches are left-padded: every row's cache ends at the same column, and the
attention mask (B, L) marks the padding. Each row keeps its own position ids,
so a sequence decodes to the same tokens alone or in any batch.

Each row picks its next token its own way: greedy (argmax) unless its RowSampler says to sample, with its
own temperature, top-p and random generator, so a seeded row samples the same tokens in any batch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from models.hf_cache import CACHE
from models.registry import Placement, load_pretrained

Messages = list[dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": "..."}]
MAX_PROMPT_TOKENS = 1536  # SmolLM2 has a 2048-token window; keep room for the reply
SPARE_COLUMNS = 64  # cache columns allocated ahead: a reply of up to 64 tokens never re-allocates its batch's cache


@dataclass(frozen=True)
class ReplyContext:
    """Everything a decoder may condition one reply on."""

    messages: Messages  # the fused text prompt: system (facts, evidence, draft), recent history, the user's turn
    image_features: tuple[np.ndarray, ...] = ()  # one (P, Dv) per image, when the vision encoder gives features
    audio_features: np.ndarray | None = None  # (T, Da) speech encoder states
    # The policy's decision as text, and the values of the [placeholders] a delexicalised reply may use
    # (app/dialogue/decision_text.py); a decoder that writes placeholders reads these.
    decision: str = ""
    values: dict[str, str] = field(default_factory=dict)
    required: tuple[str, ...] = ()  # placeholders the reply must use
    # The words a causal LM's reply starts with (the draft's first ones): it continues them, and its stream
    # begins with them. A decoder that writes its own opening (the fused one, a remote API) leaves this unread.
    opening: str = ""


@dataclass(frozen=True)
class Sampling:
    """How a reply picks its tokens. temperature 0 is greedy (argmax), whatever top_p and seed say."""

    temperature: float = 0.0  # logits are divided by it before the softmax
    top_p: float = 1.0  # nucleus: sample among the most likely tokens whose probabilities add up to top_p
    seed: int | None = None  # None: a fresh random seed per reply

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


GREEDY = Sampling()


@dataclass
class RowSampler:
    """One row's sampling settings and its own random generator (on the model's device)."""

    sampling: Sampling
    generator: torch.Generator


def row_sampler(sampling: Sampling, device: torch.device | str) -> RowSampler | None:
    """None for a greedy row; otherwise a sampler whose generator starts from the seed (or a random one)."""
    if sampling.greedy:
        return None
    generator = torch.Generator(device=device)
    if sampling.seed is None:
        generator.seed()
    else:
        generator.manual_seed(sampling.seed)
    return RowSampler(sampling, generator)


def pick_tokens(logits: torch.Tensor, samplers: list[RowSampler | None] | None = None) -> torch.Tensor:
    """(B, V) logits -> (B,) token ids: argmax for greedy rows (None), a draw for sampling rows.

    Greedy rows take exactly the argmax the all-greedy path takes, so they decode token for token as before."""
    chosen = logits.argmax(-1)  # (B,)
    for row, sampler in enumerate(samplers or ()):
        if sampler is None:
            continue
        scaled = logits[row].float() / sampler.sampling.temperature  # (V,)
        probs = torch.softmax(scaled, dim=-1)
        if sampler.sampling.top_p < 1.0:
            ordered, order = probs.sort(descending=True)  # (V,), (V,)
            before = ordered.cumsum(-1) - ordered  # (V,) probability mass of the tokens ranked above each
            ordered[before >= sampler.sampling.top_p] = 0  # the most likely token always stays (before = 0)
            probs = torch.zeros_like(probs).scatter_(0, order, ordered)
        chosen[row] = torch.multinomial(probs, 1, generator=sampler.generator)[0]
    return chosen


@dataclass
class GenerationStats:
    """Filled in by a decoder while it streams."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


class Decoder(Protocol):
    wants_features: bool  # True: the pipeline asks the encoders for hidden states, not only text
    # True: every reply states exactly the decision's facts (placeholders filled from it), so its tokens can be
    # sent before the fact check; False: a client that cannot take a `replace` gets the reply once checked.
    grounded_by_construction: bool

    def stream(
        self, context: ReplyContext, *, max_new_tokens: int, stats: GenerationStats | None = None,
        sampling: Sampling = GREEDY,
    ) -> AsyncIterator[str]: ...

    async def aclose(self) -> None: ...


class _RoomyLayer(DynamicLayer):
    """A KV-cache layer with spare columns: a decoding step writes its column in place.

    transformers' DynamicLayer concatenates the whole layer on every step, which was a fifth of a
    batch-16 step here; this one copies only when it runs out of room.
    """

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self.used, self.key_room, self.value_room = 0, key_states[:, :, :0], value_states[:, :, :0]
        end = self.used + key_states.shape[-2]
        if end > self.key_room.shape[-2]:
            self.key_room, self.value_room = (_with_room(t[:, :, :self.used], end + SPARE_COLUMNS)
                                              for t in (self.key_room, self.value_room))
        self.key_room[:, :, self.used:end] = key_states  # (B, H, new, Dh)
        self.value_room[:, :, self.used:end] = value_states
        self.used = end
        self.keys, self.values = self.key_room[:, :, :end], self.value_room[:, :, :end]  # views (B, H, L, Dh)
        return self.keys, self.values


def _with_room(t: torch.Tensor, columns: int) -> torch.Tensor:
    """(B, H, L, Dh) -> (B, H, columns, Dh) with t in the first L columns."""
    room = t.new_empty(*t.shape[:2], columns, t.shape[3])
    room[:, :, :t.shape[2]] = t
    return room


def _cache(layers: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> DynamicCache:
    """A cache of roomy layers, empty (filled by a prefill) or holding (keys, values) per layer."""
    cache = DynamicCache()
    cache.layer_class_to_replicate = _RoomyLayer
    cache.layers = []
    for keys, values in layers or []:
        layer = _RoomyLayer()
        layer.update(keys, values)
        cache.layers.append(layer)
    return cache


@dataclass
class DecodeBatch:
    """Sequences that decode together, one row each."""

    cache: DynamicCache  # per layer keys and values (B, H, L, Dh)
    mask: torch.Tensor  # (B, L) long: 1 for real tokens, 0 for left padding
    positions: torch.Tensor  # (B,) position id of the token each row feeds in next
    next_ids: torch.Tensor  # (B,) each row's newest token: already chosen, not yet fed to the model

    @property
    def size(self) -> int:
        return int(self.next_ids.shape[0])


@dataclass
class Prefill:
    """Prompts being prefilled as one left-padded batch, a slice of columns per forward pass."""

    ids: torch.Tensor  # (B, T) prompt ids, left-padded
    mask: torch.Tensor  # (B, T) long: 1 for real tokens
    samplers: list[RowSampler | None] | None  # how each row picks its first token
    cache: DynamicCache  # the columns fed so far
    done: int = 0  # columns fed so far

    @property
    def width(self) -> int:
        return int(self.ids.shape[1])


@dataclass
class TextStream:
    """Turns one sequence's token ids into text pieces as they become printable."""

    tokenizer: Any  # a transformers tokenizer
    opening: str = ""  # text the sequence continues: it goes out with the first piece
    ids: list[int] = field(default_factory=list)
    emitted: str = ""

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        # A multi-byte character can span tokens: hold it back until it is complete.
        if len(text) <= len(self.emitted) or text.endswith("\ufffd"):
            return ""
        piece, self.emitted = text[len(self.emitted):], text
        piece, self.opening = self.opening + piece, ""
        return piece


def chat_prompt_ids(tokenizer: Any, messages: Messages, opening: str = "") -> list[int]:
    """Chat-formatted prompt ids (a transformers tokenizer's chat template) for the assistant's next message, or
    for its continuation of `opening` when one is given."""
    if opening:
        messages = [*messages, {"role": "assistant", "content": opening}]
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=not opening,
                                              continue_final_message=bool(opening), tokenize=True,
                                              return_dict=True)["input_ids"])


class CausalLMDecoder:
    def __init__(self, model: torch.nn.Module, tokenizer, *, placement: Placement) -> None:
        if tokenizer.chat_template is None:
            raise ValueError("the decoder's tokenizer has no chat template; use an instruction-tuned model")
        self.model = model
        self.tokenizer = tokenizer
        self.placement = placement
        self.stop_ids = _stop_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.stop_ids)
        self.continues_opening = True  # its reply starts with ReplyContext.opening

    @classmethod
    def load(cls, source: str, *, placement: Placement, offline: bool) -> CausalLMDecoder:
        from transformers import AutoModelForCausalLM

        model, tokenizer = load_pretrained(AutoModelForCausalLM, source, placement=placement, offline=offline)
        return cls(model, tokenizer, placement=placement)

    def prompt_ids(self, messages: Messages, opening: str = "") -> list[int]:
        """Chat-formatted prompt ids, ending in `opening` when one is given. When it is too long the oldest turns
        after the system message go first (that message carries the facts), then the oldest tokens."""
        while True:
            ids = chat_prompt_ids(self.tokenizer, messages, opening)
            if len(ids) <= MAX_PROMPT_TOKENS or len(messages) <= 2:
                return ids[-MAX_PROMPT_TOKENS:]
            messages = messages[:1] + messages[2:]

    def prepare(self, context: ReplyContext) -> list[int]:
        """What prefill takes for one reply: its prompt ids, the reply's opening last."""
        return self.prompt_ids(context.messages, context.opening)

    @staticmethod
    def lookup_ids(prompt: list[int]) -> list[int]:
        """The tokens a reply may copy (prompt-lookup drafts): a rewording copies much of the draft in its prompt."""
        return list(prompt)

    def warm_up(self) -> None:
        """One short prefill and step, so the first user does not pay for kernel selection."""
        self.step(self.prefill([self.prompt_ids([{"role": "user", "content": "Hello"}])]))

    def text_stream(self, context: ReplyContext) -> TextStream:
        return TextStream(self.tokenizer, context.opening)

    def prefill(self, prompts: list[list[int]], samplers: list[RowSampler | None] | None = None) -> DecodeBatch:
        """Run the prompts; the batch's next_ids are each prompt's first reply token (samplers: one per
        prompt, None for greedy; no list: all greedy)."""
        started = self.start_prefill(prompts, samplers)
        batch = self.advance(started, started.width)
        assert batch is not None
        return batch

    def start_prefill(self, prompts: list[list[int]], samplers: list[RowSampler | None] | None = None) -> Prefill:
        """Prompts to prefill a few columns at a time (advance), so a long prefill need not stall running rows."""
        assert prompts and all(prompts), "prefill takes one or more non-empty prompts"
        length = max(len(p) for p in prompts)
        device = self.placement.device
        ids = torch.tensor([[self.pad_id] * (length - len(p)) + p for p in prompts], device=device)  # (B, T)
        mask = torch.tensor([[0] * (length - len(p)) + [1] * len(p) for p in prompts], device=device)  # (B, T)
        return Prefill(ids, mask, samplers, _cache())

    @torch.inference_mode()
    def advance(self, prefill: Prefill, columns: int) -> DecodeBatch | None:
        """Feed the prompts' next `columns` columns; after the last, the batch ready to decode, else None."""
        end = min(prefill.done + columns, prefill.width)
        position_ids = (prefill.mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): padding sits at position 0, masked out
        out = self.model(input_ids=prefill.ids[:, prefill.done:end], attention_mask=prefill.mask[:, :end],
                         position_ids=position_ids[:, prefill.done:end], use_cache=True, logits_to_keep=1,
                         **{CACHE: prefill.cache})
        prefill.done = end
        if end < prefill.width:
            return None
        next_ids = pick_tokens(out.logits[:, -1], prefill.samplers)  # (B,)
        positions = prefill.mask.sum(-1)  # (B,) each prompt's length: its first reply token's position
        return DecodeBatch(getattr(out, CACHE), prefill.mask, positions, next_ids)

    def step(self, batch: DecodeBatch, samplers: list[RowSampler | None] | None = None) -> DecodeBatch:
        """Feed each row's newest token; the result's next_ids are the tokens after it (samplers as in prefill)."""
        return self.verify(batch, [[] for _ in range(batch.size)], samplers)[0]

    @torch.inference_mode()
    def verify(
        self, batch: DecodeBatch, drafts: list[list[int]], samplers: list[RowSampler | None] | None = None,
    ) -> tuple[DecodeBatch, list[list[int]]]:
        """One forward pass over each row's newest token followed by its draft tokens (speculative decoding).

        Returns the batch advanced and, per row, the tokens chosen in this pass: the longest prefix of its
        draft that greedy decoding would have chosen itself, then the token after that prefix (so always
        at least one, and exactly the tokens plain greedy steps give). Sampling rows must bring no draft.
        Rows may bring drafts of different lengths; the block is padded on the right to the longest, and
        the columns of padding and of rejected drafts stay in the cache, masked out, so every row keeps
        ending at the batch's last column.
        """
        assert len(drafts) == batch.size
        assert not any(d and samplers and samplers[i] is not None for i, d in enumerate(drafts)), \
            "a sampling row takes no draft"
        width = 1 + max(len(d) for d in drafts)
        device = batch.next_ids.device
        block = torch.full((batch.size, width), self.pad_id, device=device)  # (B, W)
        block[:, 0] = batch.next_ids
        fed = torch.zeros_like(block)  # (B, W): 1 where a row feeds a real token
        fed[:, 0] = 1
        for row, draft in enumerate(drafts):
            if draft:
                block[row, 1:1 + len(draft)] = torch.tensor(draft, device=device)
                fed[row, 1:1 + len(draft)] = 1
        offsets = torch.arange(width, device=device)  # (W,)
        out = self.model(input_ids=block, attention_mask=torch.cat([batch.mask, fed], dim=1),
                         position_ids=batch.positions[:, None] + offsets, use_cache=True,
                         logits_to_keep=width, **{CACHE: batch.cache})
        logits = out.logits  # (B, W, V)
        first = pick_tokens(logits[:, 0], samplers)  # (B,): a sampling row's draw; the argmax for a greedy one
        predicted = logits.argmax(-1).tolist() if width > 1 else []  # (B, W) greedy choice after each block token
        chosen: list[list[int]] = []
        for row, draft in enumerate(drafts):
            kept = 0
            while kept < len(draft) and predicted[row][kept] == draft[kept]:
                kept += 1
            chosen.append(draft[:kept] + [predicted[row][kept] if draft else int(first[row])])
            fed[row, 1 + kept:] = 0  # rejected draft tokens: in the cache, never attended to again
        advanced = torch.tensor([len(tokens) for tokens in chosen], device=device)  # (B,) tokens fed and kept
        next_ids = torch.tensor([tokens[-1] for tokens in chosen], device=device)
        mask = torch.cat([batch.mask, fed], dim=1)  # (B, L + W)
        return DecodeBatch(getattr(out, CACHE), mask, batch.positions + advanced, next_ids), chosen

    @staticmethod
    def merge(first: DecodeBatch, second: DecodeBatch) -> DecodeBatch:
        """One batch of both: the shorter one's cache and mask are padded on the left."""
        length = max(first.mask.shape[1], second.mask.shape[1])

        def pad(t: torch.Tensor, dim: int) -> torch.Tensor:  # left-pad dim `dim` with zeros to `length`
            missing = length - t.shape[dim]
            if missing == 0:
                return t
            shape = list(t.shape)
            shape[dim] = missing
            return torch.cat([t.new_zeros(shape), t], dim=dim)

        layers = [
            # transformers types a layer as a union, some members without keys/values; these have them.
            (torch.cat([pad(a.keys, 2), pad(b.keys, 2)]), torch.cat([pad(a.values, 2), pad(b.values, 2)]))  # type: ignore[union-attr,arg-type]
            for a, b in zip(first.cache.layers, second.cache.layers, strict=True)
        ]  # each (B1 + B2, H, L, Dh)
        return DecodeBatch(
            _cache(layers),
            torch.cat([pad(first.mask, 1), pad(second.mask, 1)]),
            torch.cat([first.positions, second.positions]),
            torch.cat([first.next_ids, second.next_ids]),
        )

    @staticmethod
    def select(batch: DecodeBatch, rows: list[int]) -> DecodeBatch:
        """The batch narrowed to `rows`, without the padding columns no remaining row needs."""
        index = torch.tensor(rows, device=batch.mask.device)
        mask = batch.mask.index_select(0, index)  # (R, L)
        start = int((mask.sum(0) > 0).nonzero()[0])  # first column some row still uses
        layers = [(layer.keys.index_select(0, index)[:, :, start:], layer.values.index_select(0, index)[:, :, start:])  # type: ignore[union-attr]  # as in merge
                  for layer in batch.cache.layers]
        return DecodeBatch(_cache(layers), mask[:, start:], batch.positions.index_select(0, index),
                           batch.next_ids.index_select(0, index))


def _stop_ids(model: torch.nn.Module, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    ids.discard(None)
    if not ids:
        raise ValueError("the decoder defines no end-of-sequence token")
    return ids
