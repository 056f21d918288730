"""FusedSeq2Seq: modality features projected into one memory, a seq2seq decoder cross-attending to it.

    decision ids (B, K)  -> token embeddings + positions -> the same encoder blocks    -> (B, K, D)
    text ids (B, L)      -> token embeddings + positions -> small transformer encoder -> (B, L, D)
    image feats (B, P, Dv) -> MLP projector                                          -> (B, P, D)
    audio feats (B, T, Da) -> mean-pool by `audio_stride` -> MLP projector           -> (B, T', D)
    each part + its learned type embedding (decision, text, image, audio), one learned "memory start" slot in front,
    concatenated -> memory (B, M, D) with mask (B, M); a missing modality is all-masked, so it adds nothing
    reply ids (B, S) -> decoder blocks (causal self-attention, cross-attention to the memory) -> logits (B, S, V)
    required ids (B, R): the [placeholder] tokens the reply must write; each position's input also gets
        the facts still unsaid there, sum of their embeddings (B, S, D) -> linear -> added to the token embedding

Features come from Parley's own encoders (models/speech.py, models/vision.py), frozen; the config records
their sizes (and where they came from) so a server can refuse a checkpoint made for other encoders.
There is no pretrained seq2seq checkpoint in any package, so the network is built from a configurable
size; only the tokenizer is borrowed (any HF tokenizer folder or id, saved next to the weights).

The decision is the policy's choice as text ("act=respond intent=order_status ask=none ... say: order_id"),
from app/dialogue/decision_text.py: the reply is written for it, with [placeholders] where its facts go.
The facts still to say are also fed to the decoder at every position, a vector that empties as the reply
writes them (the "dialogue act" vector of the semantically conditioned LSTM, Wen et al. 2015): without it a
small decoder asked for three facts often stops after the first one or two.

A transformers PreTrainedModel + GenerationMixin: save_pretrained / from_pretrained, and generate() with
the encoder-decoder KV cache (EncoderDecoderCache) and streamers. Serving decodes with `start_step` /
`step` instead: explicit per-row caches that a scheduler can merge and narrow between steps
(models/fused_decoder.py).
"""

from __future__ import annotations

import math
from typing import Any, cast
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, AutoModelForSeq2SeqLM, GenerationMixin, PreTrainedConfig, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import ModelOutput, Seq2SeqLMOutput

from models.hf_cache import CACHE

TEXT, IMAGE, AUDIO, DECISION = 0, 1, 2, 3  # rows of the type embedding
IGNORE_INDEX = -100  # labels at padding; what cross_entropy skips
KeysValues = tuple[torch.Tensor, torch.Tensor]  # one attention layer's keys and values, each (B, H, L, C/H)


@strict
class FusedConfig(PreTrainedConfig):
    """Sizes of a FusedSeq2Seq. `image_dim` / `audio_dim` 0 = the model takes no such features."""

    model_type = "parley_fused"
    attribute_map = {"num_hidden_layers": "decoder_layers", "hidden_size": "d_model", "num_attention_heads": "n_heads"}

    vocab_size: int = 49152  # the tokenizer's size (SmolLM2's by default)
    d_model: int = 256  # width of the memory and of the decoder
    n_heads: int = 4
    ffn_dim: int = 1024  # 4 x d_model, as in the original transformer
    text_layers: int = 2  # context encoder blocks (0: embeddings + positions only)
    decoder_layers: int = 4
    dropout: float = 0.1
    max_text_positions: int = 512  # context tokens kept (the newest, see models/train.py); decision tokens too
    max_target_positions: int = 256  # reply tokens
    max_memory_positions: int = 1024  # image patches, or pooled audio frames, per example
    image_dim: int = 0  # Dv of the vision features
    audio_dim: int = 0  # Da of the speech encoder states (512 for Whisper base)
    audio_stride: int = 4  # Whisper gives 50 states/s; 4 -> 12.5 memory slots per second of speech
    image_features: str = ""  # what made the image features, e.g. "patches" or a backbone id
    audio_features: str = ""  # what made the audio features, e.g. "default" (Whisper base)
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    decoder_start_token_id: int | None = None
    is_encoder_decoder: bool = True
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")
        super().__post_init__(**kwargs)


@dataclass
class FusedEncoderOutput(ModelOutput):
    """The memory the decoder attends to and its mask (1 = a real slot)."""

    last_hidden_state: torch.Tensor | None = None  # (B, M, D)
    attention_mask: torch.Tensor | None = None  # (B, M) bool


@dataclass
class StepState:
    """Rows being decoded one token at a time (FusedSeq2Seq.step). Self-attention caches are left-padded,
    so every row's newest column is the last; padding is masked out. The memory is right-padded."""

    self_kv: list[KeysValues]  # per decoder layer, each (B, H, L, C/H)
    self_mask: torch.Tensor  # (B, L) bool: True for a real past token
    cross_kv: list[KeysValues]  # per decoder layer, the memory's keys and values (B, H, M, C/H)
    memory_mask: torch.Tensor  # (B, M) bool
    positions: torch.Tensor  # (B,) position of each row's next token
    required: torch.Tensor  # (B, R) the placeholder tokens each row must write (padding: never unsaid)
    unsaid: torch.Tensor  # (B, R) bool: required and not fed yet
    banned: torch.Tensor  # (B, V) bool: tokens the row may not write (placeholders its decision has no value for)


class Attention(nn.Module):
    def __init__(self, config: FusedConfig, *, layer_idx: int, cross: bool = False) -> None:
        super().__init__()
        self.n_heads, self.layer_idx, self.cross = config.n_heads, layer_idx, cross
        self.dropout = config.dropout
        self.query = nn.Linear(config.d_model, config.d_model)
        self.key = nn.Linear(config.d_model, config.d_model, bias=False)  # whisper: a key bias changes nothing
        self.value = nn.Linear(config.d_model, config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        return x.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, H, T, C/H)

    def keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K, D) -> keys and values (B, H, K, C/H)."""
        return self._heads(self.key(source)), self._heads(self.value(source))

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, S, D) attends to keys/values (B, H, K, C/H); mask bool, True = may attend -> (B, S, D)."""
        B, S, C = x.shape
        q = self._heads(self.query(x))  # (B, H, S, C/H)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, H, S, C/H)
        return self.out(y.transpose(1, 2).reshape(B, S, C))

    def forward(self, x: torch.Tensor, *, source: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                causal: bool = False, cache: EncoderDecoderCache | None = None) -> torch.Tensor:
        """x (B, S, D) attends to itself, or to `source` (B, M, D) when cross; mask is bool, True = may attend,
        broadcastable to (B, H, S, K). `cache` keeps past keys/values (self) or the memory's (cross, once)."""
        S = x.shape[1]
        if self.cross and cache is not None and cache.is_updated.get(self.layer_idx):
            # transformers types a cache layer as a union, some members without keys/values: these have them.
            layer: Any = cache.cross_attention_cache.layers[self.layer_idx]
            k, v = layer.keys, layer.values  # (B, H, M, C/H), computed at the first step
        else:
            k, v = self.keys_values(source if self.cross and source is not None else x)  # (B, H, K, C/H)
            if cache is not None:
                part = cache.cross_attention_cache if self.cross else cache.self_attention_cache
                k, v = part.update(k, v, self.layer_idx)  # self: (B, H, past + S, C/H)
                if self.cross:
                    cache.is_updated[self.layer_idx] = True
        if causal and S > 1:
            # Query i sits at position past + i and may see keys 0..past + i (past = cached length).
            past = k.shape[2] - S
            causal_mask = torch.ones(S, k.shape[2], dtype=torch.bool, device=x.device).tril(past)  # (S, K)
            mask = causal_mask if mask is None else mask & causal_mask
        return self.attend(x, k, v, mask)  # (B, S, D)


class Block(nn.Module):
    """Pre-norm residual block: self-attention, optional cross-attention, MLP."""

    def __init__(self, config: FusedConfig, *, layer_idx: int, cross: bool = False) -> None:
        super().__init__()
        self.attn = Attention(config, layer_idx=layer_idx)
        self.attn_ln = nn.LayerNorm(config.d_model)
        self.cross_attn = Attention(config, layer_idx=layer_idx, cross=True) if cross else None
        self.cross_attn_ln = nn.LayerNorm(config.d_model) if cross else None
        self.mlp = nn.Sequential(nn.Linear(config.d_model, config.ffn_dim), nn.GELU(),
                                 nn.Linear(config.ffn_dim, config.d_model))
        self.mlp_ln = nn.LayerNorm(config.d_model)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor | None = None, causal: bool = False,
                memory: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None,
                cache: EncoderDecoderCache | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.attn_ln(x), mask=mask, causal=causal, cache=cache))  # (B, S, D)
        if self.cross_attn is not None and self.cross_attn_ln is not None:
            x = x + self.drop(self.cross_attn(self.cross_attn_ln(x), source=memory, mask=memory_mask, cache=cache))
        return x + self.drop(self.mlp(self.mlp_ln(x)))

    def step(self, x: torch.Tensor, past: KeysValues, self_mask: torch.Tensor, cross: KeysValues,
             cross_mask: torch.Tensor) -> tuple[torch.Tensor, KeysValues]:
        """One new token per row, x (B, 1, D), given this layer's past self-attention keys/values (B, H, L, C/H)
        and the memory's (B, H, M, C/H); masks bool (B, 1, 1, L + 1) and (B, 1, 1, M) -> (B, 1, D) and the
        self-attention keys/values with the new column appended (B, H, L + 1, C/H). Inference only."""
        assert self.cross_attn is not None and self.cross_attn_ln is not None, "step is for decoder blocks"
        h = self.attn_ln(x)
        k, v = self.attn.keys_values(h)  # (B, H, 1, C/H)
        k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        x = x + self.attn.attend(h, k, v, self_mask)
        x = x + self.cross_attn.attend(self.cross_attn_ln(x), cross[0], cross[1], cross_mask)
        return x + self.mlp(self.mlp_ln(x)), (k, v)


class Projector(nn.Module):
    """Encoder features (B, N, Din) -> (B, N, D): two-layer MLP, as in LLaVA."""

    def __init__(self, in_dim: int, d_model: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, d_model), nn.GELU(),
                                 nn.Linear(d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def pool_time(features: torch.Tensor, mask: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked mean over windows of `stride` frames: (B, T, D), (B, T) -> (B, ceil(T/stride), D), (B, T')."""
    B, T, D = features.shape
    pad = -T % stride
    features, mask = F.pad(features, (0, 0, 0, pad)), F.pad(mask, (0, pad))  # (B, T + pad, D)
    weight = mask.to(features.dtype).view(B, -1, stride, 1)  # (B, T', stride, 1)
    summed = (features.view(B, -1, stride, D) * weight).sum(2)  # (B, T', D)
    count = weight.sum(2)  # (B, T', 1)
    return summed / count.clamp(min=1), count.squeeze(-1) > 0


class FusedEncoder(nn.Module):
    """Text context, image and audio features -> one memory with its mask."""

    main_input_name = "input_ids"  # what generate() hands the encoder its first argument as

    def __init__(self, config: FusedConfig, embed_tokens: nn.Embedding) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = embed_tokens  # shared with the decoder
        self.text_positions = nn.Embedding(config.max_text_positions, config.d_model)
        self.blocks = nn.ModuleList(Block(config, layer_idx=i) for i in range(config.text_layers))  # never cached
        self.text_ln = nn.LayerNorm(config.d_model)
        self.image_proj = Projector(config.image_dim, config.d_model) if config.image_dim else None
        self.audio_proj = Projector(config.audio_dim, config.d_model) if config.audio_dim else None
        self.memory_positions = nn.Embedding(config.max_memory_positions, config.d_model)
        self.modality = nn.Embedding(4, config.d_model)  # TEXT, IMAGE, AUDIO, DECISION
        self.memory_start = nn.Parameter(torch.zeros(1, 1, config.d_model))  # always there: no empty memory

    def _features(self, proj: Projector | None, features: torch.Tensor | None, mask: torch.Tensor | None,
                  kind: int, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        if features is None:
            return None
        if proj is None:
            raise ValueError(f"this model was built without {name} features (its {name}_dim is 0)")
        B, N, D = features.shape
        expected = self.config.image_dim if kind == IMAGE else self.config.audio_dim
        assert D == expected, f"{name} features are {D}-d, this model takes {expected}-d"
        mask = torch.ones(B, N, dtype=torch.bool, device=features.device) if mask is None else mask.bool()
        if kind == AUDIO and self.config.audio_stride > 1:
            features, mask = pool_time(features, mask, self.config.audio_stride)  # (B, T', Da)
        features, mask = features[:, : self.config.max_memory_positions], mask[:, : self.config.max_memory_positions]
        positions = torch.arange(features.shape[1], device=features.device)
        x = proj(features.to(self.memory_start.dtype)) + self.memory_positions(positions) + self.modality.weight[kind]
        return x, mask  # (B, N', D), (B, N')

    def _text(self, ids: torch.Tensor, mask: torch.Tensor | None, kind: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, L) through the encoder blocks -> (B, L, D) tagged as `kind`, and the bool mask (B, L)."""
        B, L = ids.shape
        limit = self.config.max_text_positions
        assert L <= limit, f"{L} tokens; the model takes {limit}"
        mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
        x = self.embed_tokens(ids) + self.text_positions(torch.arange(L, device=ids.device))  # (B, L, D)
        key_mask = mask[:, None, None, :] | ~mask.any(-1)[:, None, None, None]  # (B, 1, 1, L); no NaN rows
        for block in self.blocks:
            x = block(x, mask=key_mask)
        return self.text_ln(x) + self.modality.weight[kind], mask

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
        decision_ids: torch.Tensor | None = None, decision_mask: torch.Tensor | None = None,
        image_features: torch.Tensor | None = None, image_mask: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None, audio_mask: torch.Tensor | None = None,
        **kwargs,  # generate() passes output_attentions / return_dict; there is nothing else to return
    ) -> FusedEncoderOutput:
        """input_ids (B, L) with attention_mask (B, L); decision_ids (B, K) with decision_mask (B, K);
        image_features (B, P, Dv) with image_mask (B, P); audio_features (B, T, Da) with audio_mask (B, T).
        Any but input_ids may be absent; a row of zeros in a mask means that example has none of that part."""
        B = input_ids.shape[0]
        parts = [(self.memory_start.expand(B, 1, -1), torch.ones(B, 1, dtype=torch.bool, device=input_ids.device))]
        if decision_ids is not None:
            parts.append(self._text(decision_ids, decision_mask, DECISION))
        parts.append(self._text(input_ids, attention_mask, TEXT))
        for part in (self._features(self.image_proj, image_features, image_mask, IMAGE, "image"),
                     self._features(self.audio_proj, audio_features, audio_mask, AUDIO, "audio")):
            if part is not None:
                parts.append(part)
        memory = torch.cat([p for p, _ in parts], dim=1)  # (B, M, D)
        mask = torch.cat([m for _, m in parts], dim=1)  # (B, M)
        return FusedEncoderOutput(last_hidden_state=memory, attention_mask=mask)


class FusedDecoder(nn.Module):
    def __init__(self, config: FusedConfig, embed_tokens: nn.Embedding) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = embed_tokens
        self.positions = nn.Embedding(config.max_target_positions, config.d_model)
        self.blocks = nn.ModuleList(Block(config, layer_idx=i, cross=True) for i in range(config.decoder_layers))
        self.ln = nn.LayerNorm(config.d_model)
        self.unsaid = nn.Linear(config.d_model, config.d_model, bias=False)  # facts still to say -> the input

    def facts_in(self, required: torch.Tensor) -> torch.Tensor:
        """(B, R) required placeholder tokens, padded with pad_token_id -> (B, R) bool: a fact, not padding."""
        return required.ne(cast(int, self.config.pad_token_id))

    def inputs(self, ids: torch.Tensor, positions: torch.Tensor, required: torch.Tensor | None,
               unsaid: torch.Tensor | None) -> torch.Tensor:
        """Token ids (B, S) at `positions` (S,) or (B, S), with the required placeholder tokens (B, R) and
        which of them are unsaid at each position (B, S, R) bool -> decoder input (B, S, D)."""
        x = self.embed_tokens(ids) + self.positions(positions)  # (B, S, D)
        facts = x.new_zeros(x.shape)
        if required is not None and unsaid is not None:
            facts = unsaid.to(x.dtype) @ self.embed_tokens(required)  # (B, S, R) @ (B, R, D) -> (B, S, D)
        return x + self.unsaid(facts)

    @property
    def layers(self) -> list[Block]:
        return cast(list[Block], list(self.blocks))  # a ModuleList's items are typed as any Module

    def forward(self, input_ids: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor, *,
                required: torch.Tensor | None = None, cache: EncoderDecoderCache | None = None) -> torch.Tensor:
        """input_ids (B, S) (the new tokens only when a cache holds the earlier ones), memory (B, M, D),
        memory_mask (B, M), required placeholder tokens (B, R) padded with pad_token_id -> hidden states (B, S, D)."""
        B, S = input_ids.shape
        past = cache.get_seq_length() if cache is not None else 0
        assert past + S <= self.config.max_target_positions, "reply longer than max_target_positions"
        unsaid = None
        if required is not None:
            if past:
                raise ValueError("required facts are tracked over the whole reply: decode with start_steps/step")
            said = (input_ids[:, :, None] == required[:, None, :]).int().cummax(dim=1).values.bool()  # (B, S, R)
            unsaid = self.facts_in(required)[:, None, :] & ~said
        positions = torch.arange(past, past + S, device=input_ids.device)
        x = self.inputs(input_ids, positions, required, unsaid)  # (B, S, D)
        cross_mask = memory_mask.bool()[:, None, None, :]  # (B, 1, 1, M)
        for block in self.blocks:
            x = block(x, causal=True, memory=memory, memory_mask=cross_mask, cache=cache)
        return self.ln(x)


class FusedPreTrainedModel(PreTrainedModel):
    config_class = FusedConfig
    config: FusedConfig  # what from_pretrained builds from config_class
    base_model_prefix = "fused"
    main_input_name = "input_ids"
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class FusedSeq2Seq(FusedPreTrainedModel, GenerationMixin):
    # One token embedding: context encoder, decoder input and output projection.
    _tied_weights_keys = {"lm_head.weight": "embed_tokens.weight", "encoder.embed_tokens.weight": "embed_tokens.weight",
                          "decoder.embed_tokens.weight": "embed_tokens.weight"}

    def __init__(self, config: FusedConfig) -> None:
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.encoder = FusedEncoder(config, self.embed_tokens)
        self.decoder = FusedDecoder(config, self.embed_tokens)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()

    def get_encoder(self, modality: str | None = None) -> FusedEncoder:
        """The context encoder (it takes every modality; `modality` is the base class's argument)."""
        return self.encoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        assert isinstance(value, nn.Embedding), type(value)
        self.embed_tokens = self.encoder.embed_tokens = self.decoder.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decision_ids: torch.Tensor | None = None,
        decision_mask: torch.Tensor | None = None,
        image_features: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        required_ids: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        encoder_outputs: FusedEncoderOutput | None = None,
        cache: Cache | None = None,
        past_key_values: Cache | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs,  # generate()'s bookkeeping (cache_position, return_dict, ...); nothing here needs it
    ) -> Seq2SeqLMOutput:
        """Encoder inputs as in FusedEncoder.forward (or a ready `encoder_outputs`); required_ids (B, R): the
        placeholder tokens the reply must write, padded with pad_token_id (training; decode them with `step`);
        decoder_input_ids (B, S); labels (B, S) with IGNORE_INDEX at padding -> logits (B, S, V) and the
        mean token cross-entropy.
        generate() passes the KV cache as `cache` (transformers >= 5.24) or `past_key_values` (before)."""
        past = cache if cache is not None else past_key_values
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_ids, attention_mask, decision_ids=decision_ids,
                                           decision_mask=decision_mask, image_features=image_features,
                                           image_mask=image_mask, audio_features=audio_features, audio_mask=audio_mask)
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("give decoder_input_ids or labels")
            decoder_input_ids = self.shift_right(labels)
        if use_cache and past is None:
            past = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        cache = past if use_cache else None
        hidden = self.decoder(decoder_input_ids, encoder_outputs.last_hidden_state, encoder_outputs.attention_mask,
                              required=required_ids, cache=cache)  # (B, S, D)
        logits = self.lm_head(hidden)  # (B, S, V)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
        return Seq2SeqLMOutput(loss=loss, logits=logits, encoder_last_hidden_state=encoder_outputs.last_hidden_state,
                               **{CACHE: cache})  # type: ignore[arg-type]  # the field's name varies by version

    def start_steps(self, memory: torch.Tensor, memory_mask: torch.Tensor, required: torch.Tensor | None = None,
                    banned: torch.Tensor | None = None) -> StepState:
        """Rows about to decode from `memory` (B, M, D) with `memory_mask` (B, M), each to write its `required`
        placeholder tokens (B, R), padded with pad_token_id, and never its `banned` tokens (B, V) bool: the
        memory's keys and values for every layer's cross-attention, computed once, and empty self-attention caches."""
        B = memory.shape[0]
        if required is None:
            required = torch.zeros(B, 0, dtype=torch.long, device=memory.device)
        if banned is None:
            banned = torch.zeros(B, self.config.vocab_size, dtype=torch.bool, device=memory.device)
        heads, width = self.config.n_heads, self.config.d_model // self.config.n_heads
        empty = memory.new_zeros(B, heads, 0, width)
        cross = []
        for block in self.decoder.layers:
            assert block.cross_attn is not None  # decoder blocks have it
            cross.append(block.cross_attn.keys_values(memory))
        return StepState(self_kv=[(empty, empty)] * len(cross), self_mask=memory_mask.new_zeros(B, 0),
                         cross_kv=cross, memory_mask=memory_mask.bool(),
                         positions=torch.zeros(B, dtype=torch.long, device=memory.device),
                         required=required, unsaid=self.decoder.facts_in(required), banned=banned)

    def step(self, ids: torch.Tensor, state: StepState) -> tuple[torch.Tensor, StepState]:
        """Feed one token per row, ids (B,), each at its row's own position -> logits (B, V) for the token
        after it, and the state with that token in its caches. Rows are independent: a row decodes the same
        alone or beside others, whatever its padding.

        The logits keep the facts exact: a banned token is never chosen, and a row cannot end while a required
        placeholder is unsaid (at the last position the caller ends it anyway, and the pipeline's check sends
        the policy's wording for a reply that still lacks one)."""
        assert int(state.positions.max()) < self.config.max_target_positions, "reply longer than max_target_positions"
        unsaid = state.unsaid & (state.required != ids[:, None])  # (B, R)
        x = self.decoder.inputs(ids[:, None], state.positions[:, None], state.required, unsaid[:, None])  # (B, 1, D)
        self_mask = torch.cat([state.self_mask, state.self_mask.new_ones(len(ids), 1)], dim=1)  # (B, L + 1)
        cross_mask = state.memory_mask[:, None, None, :]  # (B, 1, 1, M)
        caches = []
        for block, past, cross in zip(self.decoder.layers, state.self_kv, state.cross_kv, strict=True):
            x, kv = block.step(x, past, self_mask[:, None, None, :], cross, cross_mask)
            caches.append(kv)
        logits = self.lm_head(self.decoder.ln(x))[:, 0]  # (B, V)
        logits = logits.masked_fill(state.banned, float("-inf"))
        ends = list(self.end_ids)
        logits[:, ends] = logits[:, ends].masked_fill(unsaid.any(1, keepdim=True), float("-inf"))  # (B, E)
        return logits, StepState(caches, self_mask, state.cross_kv, state.memory_mask, state.positions + 1,
                                 state.required, unsaid, state.banned)

    @property
    def end_ids(self) -> set[int]:
        """The tokens that end a reply."""
        eos = self.config.eos_token_id
        return {eos} if isinstance(eos, int) else set(eos or ())

    def shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        """(B, S) labels -> (B, S) decoder inputs: the start token, then the labels but the last."""
        start_id, pad_id = self.config.decoder_start_token_id, self.config.pad_token_id
        if start_id is None or pad_id is None:
            raise ValueError("the config needs decoder_start_token_id and pad_token_id to train")
        start = torch.full_like(labels[:, :1], start_id)
        shifted = torch.cat([start, labels[:, :-1]], dim=1)
        return shifted.masked_fill(shifted == IGNORE_INDEX, pad_id)


def memory_size(config: FusedConfig, *, text: int, decision: int = 0, image: int = 0, audio: int = 0) -> int:
    """Memory slots for `text` and `decision` tokens, `image` patches and `audio` encoder states (before
    truncation)."""
    return 1 + decision + text + min(image, config.max_memory_positions) + min(
        math.ceil(audio / max(1, config.audio_stride)), config.max_memory_positions)


def render_context(messages: list[dict[str, str]]) -> str:
    """Chat messages -> the text the context encoder reads, one "role: text" line per turn, oldest first.

    System messages are left out: the model answers from the dialogue and the media features. Training
    (models/train.py) and serving render the same way."""
    return "\n".join(f"{m['role']}: {' '.join(m['content'].split())}" for m in messages
                     if m["role"] != "system" and m["content"].strip())


def encode_context(tokenizer, text: str, config: FusedConfig) -> list[int]:
    """Context token ids, the newest `max_text_positions` kept (the end of the dialogue matters most)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids[-config.max_text_positions:] or [config.pad_token_id]



def encode_decision(tokenizer, text: str, config: FusedConfig) -> list[int]:
    """Decision token ids, the first `max_text_positions` kept (the act comes first); none for no decision."""
    return tokenizer(text, add_special_tokens=False)["input_ids"][:config.max_text_positions] if text.strip() else []

AutoConfig.register(FusedConfig.model_type, FusedConfig)
AutoModelForSeq2SeqLM.register(FusedConfig, FusedSeq2Seq)
