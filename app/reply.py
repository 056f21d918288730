"""What a client asks of a reply (length, sampling, stop sequences, how many) and what one turn's replies are.

The OpenAI-compatible route fills ReplyOptions from its request; the native turn route uses the defaults. The
pipeline passes the sampling settings to the decoder and clips each finished reply here: stop sequences first,
then max_tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.dialogue.tools import ToolCall
from app.schemas import TurnResponse
from models.decoder import Sampling

FinishReason = Literal["stop", "length"]
WORD = re.compile(r"\S+\s*")  # a word and the whitespace after it


@dataclass(frozen=True)
class ReplyOptions:
    max_tokens: int | None = None  # None: the server's PARLEY_DECODER_MAX_NEW_TOKENS bounds the decoding only
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()  # the reply ends before the first of these
    seed: int | None = None  # with temperature > 0: the same seed samples the same reply
    n: int = 1  # replies to write for the one tracked turn

    def sampling(self, index: int) -> Sampling:
        """Choice `index`'s sampling: with a seed, each choice draws from seed + index, so n choices differ
        from one another and each repeats with the same seed."""
        seed = None if self.seed is None else self.seed + index
        return Sampling(temperature=self.temperature, top_p=self.top_p, seed=seed)


DEFAULT_REPLY = ReplyOptions()


class WrittenReply(BaseModel):
    """One reply as the client gets it."""

    text: str
    grounded: bool  # false: the model's wording dropped a fact and the policy's draft was used
    finish_reason: FinishReason
    completion_tokens: int = 0


class TurnResult(TurnResponse):
    """A turn as the pipeline returns it: the native response, plus what only OpenAI's protocol shows (all
    the choices, or the tool call that stands instead of a reply). Those two are kept out of model_dump(), so a
    native response or SSE event never carries them; record() keeps them for an idempotent replay."""

    choices: list[WrittenReply] = Field(default_factory=list, exclude=True)
    tool_call: ToolCall | None = Field(None, exclude=True)

    def record(self) -> dict[str, Any]:
        """Everything but the spoken reply (a replay speaks the stored words again)."""
        extras = {"choices": [choice.model_dump() for choice in self.choices],
                  "tool_call": self.tool_call.model_dump() if self.tool_call else None}
        return self.model_dump(exclude={"reply_audio"}) | extras

    def written(self) -> list[WrittenReply]:
        """The choices; a stored reply from before they were recorded is one choice that stopped."""
        return self.choices or [WrittenReply(text=self.reply, grounded=self.grounded, finish_reason="stop",
                                             completion_tokens=self.usage.completion_tokens)]


def clip(text: str, options: ReplyOptions, tokenizer: Any | None) -> tuple[str, FinishReason | None]:
    """The reply cut at its first stop sequence ("stop"), else to max_tokens ("length"); None: not cut.

    Tokens are the decoder's own tokenizer's (`tokenizer`, a transformers tokenizer) where it has one; a remote
    decoder's tokenizer is not known here, so for it max_tokens counts words."""
    cuts = [index for index in (text.find(stop) for stop in options.stop if stop) if index >= 0]
    if cuts:
        return text[:min(cuts)], "stop"
    if options.max_tokens is None:
        return text, None
    if tokenizer is None:
        words = WORD.findall(text)
        if len(words) <= options.max_tokens:
            return text, None
        return "".join(words[:options.max_tokens]).rstrip(), "length"
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) <= options.max_tokens:
        return text, None
    return tokenizer.decode(ids[:options.max_tokens], skip_special_tokens=True).rstrip(), "length"
