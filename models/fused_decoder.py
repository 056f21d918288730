"""A trained FusedSeq2Seq as the server's reply model (the default decoder; PARLEY_DECODER=fused:<dir>).

It decodes the way models/decoder.py's CausalLMDecoder does, so app/batching.py's ContinuousDecoder
batches replies of different sessions into one step: `prepare` turns a ReplyContext into a request,
`prefill` encodes requests into per-row memories and takes each row's first token, `step` advances every
row by one token, `merge` and `select` join and narrow batches between steps. Each row has its own memory
(right-padded, masked) and its own self-attention cache (left-padded, masked), so a reply decodes to the
same tokens alone or beside others.

Replies are delexicalised ("Order [order_id] is [status]"): the pipeline fills the placeholders from the
decision's values as they stream, so the facts are exact by construction (`grounded_by_construction`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.decoder import ReplyContext, RowSampler, TextStream, pick_tokens
from models.fused import FusedSeq2Seq, KeysValues, StepState, encode_context, encode_decision, render_context
from models.registry import Placement
from models.train import Item, encode_banned, encode_required, generate_replies, start_decoding


class FeatureMismatch(ValueError):
    """The checkpoint was trained on features of other sizes than the configured encoders give."""


def check_features(config, *, image_dim: int | None, audio_dim: int | None) -> None:
    """Refuse a checkpoint whose feature sizes differ from what the encoders give (None: no features)."""
    wanted = (("image", config.image_dim, image_dim, config.image_features, "PARLEY_VISION_BACKBONE"),
              ("audio", config.audio_dim, audio_dim, config.audio_features, "PARLEY_SPEECH_MODEL"))
    for name, takes, gives, made_by, setting in wanted:
        if takes and gives != takes:
            have = "no features" if gives is None else f"{gives}-d features"
            raise FeatureMismatch(
                f"the fused checkpoint takes {takes}-d {name} features"
                f" (trained with {made_by or 'an unnamed encoder'}),"
                f" but the configured {name} encoder gives {have}: set {setting}={made_by or '...'} to the encoder"
                f" it was trained with, or retrain with `parley train` on the encoders you serve")


@dataclass
class FusedBatch:
    """Replies that decode together, one row each."""

    state: StepState
    next_ids: torch.Tensor  # (B,) each row's newest token: already chosen, not yet fed to the model

    @property
    def size(self) -> int:
        return int(self.next_ids.shape[0])


@dataclass
class FusedPrefill:
    """Requests waiting to be encoded and started together (ContinuousDecoder's prefill)."""

    requests: list[Item]
    samplers: list[RowSampler | None] | None

    @property
    def width(self) -> int:
        return max(len(request.input_ids) for request in self.requests)


class FusedSeq2SeqDecoder:
    grounded_by_construction = True  # replies carry [placeholders]; the pipeline fills them from the decision

    def __init__(self, model: FusedSeq2Seq, tokenizer, *, placement: Placement) -> None:
        self.model, self.tokenizer, self.placement = model, tokenizer, placement
        config = model.config
        if config.eos_token_id is None or config.decoder_start_token_id is None:
            raise ValueError("the fused checkpoint's config names no end or decoder start token")
        self.stop_ids = model.end_ids
        self.start_id = config.decoder_start_token_id
        self.max_reply_tokens = config.max_target_positions  # a reply ends there: the model has no later position
        self.wants_features = bool(config.image_dim or config.audio_dim)  # the pipeline asks the encoders for them

    @classmethod
    def load(cls, directory: str | Path, *, placement: Placement) -> FusedSeq2SeqDecoder:
        """A `parley train` output folder. Check it against the encoders with check_encoders()."""
        from transformers import AutoConfig, AutoTokenizer

        path = Path(directory).expanduser()
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"no fused checkpoint in {path} (no config.json): train one with `parley train`")
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        if config.model_type != "parley_fused":
            raise ValueError(f"{path} holds a {config.model_type!r} model, not a FusedSeq2Seq checkpoint")
        # transformers' wrapper of `to` is typed as taking a model.
        model = FusedSeq2Seq.from_pretrained(path, dtype=placement.dtype).to(placement.device).eval()  # type: ignore[arg-type]
        return cls(model, AutoTokenizer.from_pretrained(path, local_files_only=True), placement=placement)

    def check_encoders(self, *, image_dim: int | None, audio_dim: int | None) -> None:
        """FeatureMismatch unless the encoders give the feature sizes this model was trained on."""
        check_features(self.model.config, image_dim=image_dim, audio_dim=audio_dim)

    def prepare(self, context: ReplyContext) -> Item:
        """One reply's request: the rendered dialogue and the decision as token ids; the turn's image
        features (all images, one after the other) and speech states where the model takes them."""
        config = self.model.config
        image = np.concatenate(context.image_features) if config.image_dim and context.image_features else None
        audio = context.audio_features if config.audio_dim else None
        return Item(input_ids=encode_context(self.tokenizer, render_context(context.messages), config),
                    decision_ids=encode_decision(self.tokenizer, context.decision, config), labels=[],
                    required_ids=encode_required(self.tokenizer, context.required),
                    banned_ids=encode_banned(self.tokenizer, context.values),
                    image=image, audio=audio)

    def text_stream(self, context: ReplyContext) -> TextStream:  # the model writes its own opening
        return TextStream(self.tokenizer)

    def warm_up(self) -> None:
        """One short prefill and step, so the first user does not pay for kernel selection."""
        self.step(self.prefill([self.prepare(ReplyContext([{"role": "user", "content": "Hello"}]))]))

    @torch.inference_mode()
    def prefill(self, requests: list[Item], samplers: list[RowSampler | None] | None = None) -> FusedBatch:
        """Encode the requests into one memory each and feed the start token; next_ids are each reply's
        first token (samplers: one per request, None for greedy; no list: all greedy)."""
        device = self.placement.device
        state = start_decoding(self.model, requests, device=device, dtype=self.placement.dtype)
        starts = torch.full((len(requests),), self.start_id, dtype=torch.long, device=device)
        return self._advance(starts, state, samplers)

    @staticmethod
    def lookup_ids(request: Item) -> list[int]:
        """No prompt-lookup drafts: the reply is the model's own phrasing, not a copy of its input."""
        return []

    @staticmethod
    def start_prefill(requests: list[Item], samplers: list[RowSampler | None] | None = None) -> FusedPrefill:
        return FusedPrefill(requests, samplers)

    def advance(self, prefill: FusedPrefill, columns: int) -> FusedBatch:
        """The whole prefill in one pass, whatever `columns` says: a memory of the decision and a few turns is
        short, so it does not stall the running rows as a long causal-LM prompt would."""
        return self.prefill(prefill.requests, prefill.samplers)

    def verify(self, batch: FusedBatch, drafts: list[list[int]], samplers: list[RowSampler | None] | None = None,
               ) -> tuple[FusedBatch, list[list[int]]]:
        """One step for every row. Drafts are not checked (the reply is the model's own phrasing, seldom a copy
        of what it wrote before): each row keeps its one greedy or sampled token, as if its draft was refused."""
        stepped = self.step(batch, samplers)
        return stepped, [[token] for token in stepped.next_ids.tolist()]

    @torch.inference_mode()
    def step(self, batch: FusedBatch, samplers: list[RowSampler | None] | None = None) -> FusedBatch:
        """Feed each row's newest token; the result's next_ids are the tokens after it."""
        return self._advance(batch.next_ids, batch.state, samplers)

    def _advance(self, ids: torch.Tensor, state: StepState, samplers: list[RowSampler | None] | None) -> FusedBatch:
        logits, state = self.model.step(ids, state)  # (B, V)
        chosen = pick_tokens(logits, samplers)  # (B,)
        # A row at the model's last position ends there: its reply is as long as the model can write.
        full = state.positions >= self.model.config.max_target_positions
        return FusedBatch(state, chosen.masked_fill(full, min(self.stop_ids)))

    def write_all(self, requests: list[Item], *, max_new_tokens: int, batch_size: int = 64) -> list[str]:
        """Greedy replies to many requests, `batch_size` rows at a time (evaluation; the server streams)."""
        return [reply for start in range(0, len(requests), batch_size)
                for reply in generate_replies(self.model, requests[start:start + batch_size], self.tokenizer,
                                              max_new_tokens=max_new_tokens)]

    @staticmethod
    def merge(first: FusedBatch, second: FusedBatch) -> FusedBatch:
        """One batch of both: self-attention caches padded on the left, memories and required facts on the right."""
        a, b = first.state, second.state
        past = max(a.self_mask.shape[1], b.self_mask.shape[1])
        memory = max(a.memory_mask.shape[1], b.memory_mask.shape[1])
        facts = max(a.required.shape[1], b.required.shape[1])
        self_kv = [(torch.cat([_pad(ka, 2, past, left=True), _pad(kb, 2, past, left=True)]),
                    torch.cat([_pad(va, 2, past, left=True), _pad(vb, 2, past, left=True)]))
                   for (ka, va), (kb, vb) in zip(a.self_kv, b.self_kv, strict=True)]
        cross_kv = [(torch.cat([_pad(ka, 2, memory), _pad(kb, 2, memory)]),
                     torch.cat([_pad(va, 2, memory), _pad(vb, 2, memory)]))
                    for (ka, va), (kb, vb) in zip(a.cross_kv, b.cross_kv, strict=True)]
        state = StepState(
            self_kv, torch.cat([_pad(a.self_mask, 1, past, left=True), _pad(b.self_mask, 1, past, left=True)]),
            cross_kv, torch.cat([_pad(a.memory_mask, 1, memory), _pad(b.memory_mask, 1, memory)]),
            torch.cat([a.positions, b.positions]), torch.cat([_pad(a.required, 1, facts), _pad(b.required, 1, facts)]),
            torch.cat([_pad(a.unsaid, 1, facts), _pad(b.unsaid, 1, facts)]), torch.cat([a.banned, b.banned]))
        return FusedBatch(state, torch.cat([first.next_ids, second.next_ids]))

    @staticmethod
    def select(batch: FusedBatch, rows: list[int]) -> FusedBatch:
        """The batch narrowed to `rows`, without the padding columns no remaining row needs."""
        s = batch.state
        index = torch.tensor(rows, device=s.self_mask.device)
        self_mask, memory_mask = s.self_mask.index_select(0, index), s.memory_mask.index_select(0, index)
        used = self_mask.any(0).nonzero()
        start = int(used[0]) if len(used) else self_mask.shape[1]  # first past column some row still uses
        end = int(memory_mask.any(0).nonzero()[-1]) + 1  # the memory-start slot is always there
        state = StepState(
            [_rows(kv, index, start, None) for kv in s.self_kv], self_mask[:, start:],
            [_rows(kv, index, 0, end) for kv in s.cross_kv], memory_mask[:, :end], s.positions.index_select(0, index),
            s.required.index_select(0, index), s.unsaid.index_select(0, index), s.banned.index_select(0, index))
        return FusedBatch(state, batch.next_ids.index_select(0, index))


def _pad(t: torch.Tensor, dim: int, length: int, *, left: bool = False) -> torch.Tensor:
    """`t` padded with zeros (False for a mask) along `dim` to `length`, on the left or the right."""
    missing = length - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    parts = [t.new_zeros(shape), t] if left else [t, t.new_zeros(shape)]
    return torch.cat(parts, dim=dim)


def _rows(kv: KeysValues, index: torch.Tensor, start: int, end: int | None) -> KeysValues:
    """One layer's keys and values (B, H, L, C/H) narrowed to rows `index` and columns start:end."""
    return tuple(t.index_select(0, index)[:, :, start:end] for t in kv)  # type: ignore[return-value]
