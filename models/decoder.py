"""Reply generation with a causal LM: chat messages in, a stream of text pieces out.

Greedy decoding step by step over a KV cache, so that each token can be handed
to the caller as soon as it exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch

from models.registry import Placement, load_pretrained

Messages = list[dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": "..."}]
MAX_PROMPT_TOKENS = 1536  # SmolLM2 has a 2048-token window; keep room for the reply


class Decoder(Protocol):
    def stream(self, messages: Messages, *, max_new_tokens: int) -> Iterator[str]: ...


class CausalLMDecoder:
    def __init__(self, model: torch.nn.Module, tokenizer, *, placement: Placement) -> None:
        if tokenizer.chat_template is None:
            raise ValueError("the decoder's tokenizer has no chat template; use an instruction-tuned model")
        self.model = model
        self.tokenizer = tokenizer
        self.placement = placement
        self.stop_ids = _stop_ids(model, tokenizer)

    @classmethod
    def load(cls, source: str, *, placement: Placement, offline: bool) -> CausalLMDecoder:
        from transformers import AutoModelForCausalLM

        model, tokenizer = load_pretrained(AutoModelForCausalLM, source, placement=placement, offline=offline)
        return cls(model, tokenizer, placement=placement)

    def prompt_ids(self, messages: Messages) -> torch.Tensor:
        """Chat-formatted prompt, (1, T) token ids. When it is too long the oldest turns after the
        system message go first (that message carries the facts), then the oldest tokens."""
        while True:
            ids = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )["input_ids"]
            if ids.shape[1] <= MAX_PROMPT_TOKENS or len(messages) <= 2:
                return ids[:, -MAX_PROMPT_TOKENS:].to(self.placement.device)
            messages = messages[:1] + messages[2:]

    @torch.inference_mode()
    def stream(self, messages: Messages, *, max_new_tokens: int) -> Iterator[str]:
        input_ids = self.prompt_ids(messages)  # (1, T)
        past = None
        generated: list[int] = []
        emitted = ""
        for _ in range(max_new_tokens):
            out = self.model(input_ids=input_ids, past_key_values=past, use_cache=True)
            past = out.past_key_values
            next_id = int(out.logits[0, -1].argmax())
            if next_id in self.stop_ids:
                break
            generated.append(next_id)
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            # A multi-byte character can span tokens: hold it back until complete.
            if len(text) > len(emitted) and not text.endswith("\ufffd"):
                yield text[len(emitted):]
                emitted = text
            input_ids = torch.tensor([[next_id]], device=self.placement.device)  # (1, 1)


def _stop_ids(model: torch.nn.Module, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    ids.discard(None)
    if not ids:
        raise ValueError("the decoder defines no end-of-sequence token")
    return ids
