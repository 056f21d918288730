"""What a client asks of a reply (length, sampling, stop sequences, how many) and what one turn's replies are.

The OpenAI-compatible route fills ReplyOptions from its request; the native turn route uses the defaults. The
pipeline passes the sampling settings to the decoder and clips each finished reply here: stop sequences first,
then max_tokens (LiveClip cuts the streamed pieces the same way).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

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
    reply_audio: bool = False  # speak the (first) reply too

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


def clip(text: str, options: ReplyOptions, tokenizer: Any | None) -> tuple[str, FinishReason | None]:
    """The reply cut at its first stop sequence ("stop"), else to max_tokens ("length"); None: not cut.

    Tokens are the decoder's own tokenizer's (`tokenizer`, a transformers tokenizer) where it has one; a remote
    decoder's tokenizer is not known here, so for it max_tokens counts words."""
    cuts = [index for index in (text.find(stop) for stop in options.stop if stop) if index >= 0]
    if cuts:
        return text[:min(cuts)], "stop"
    if options.max_tokens is None:
        return text, None
    pieces = _tokens(text, tokenizer)
    if len(pieces) <= options.max_tokens:
        return text, None
    if tokenizer is None:
        return "".join(pieces[:options.max_tokens]).rstrip(), "length"
    return tokenizer.decode(pieces[:options.max_tokens], skip_special_tokens=True).rstrip(), "length"


def tokens_in(text: str, tokenizer: Any | None) -> int:
    """`text`'s length in the decoder's tokens (a transformers tokenizer), or in words for a remote decoder."""
    return len(_tokens(text, tokenizer))


def _tokens(text: str, tokenizer: Any | None) -> list:
    """`text` as the decoder's token ids, or as words (with their spaces) when its tokenizer is not known."""
    return WORD.findall(text) if tokenizer is None else tokenizer(text, add_special_tokens=False)["input_ids"]


class LiveClip:
    """A reply's pieces passed on as they are written, cut where clip() cuts the whole: nothing from a stop
    sequence on (the end of the text that could begin one is held until it does not), nothing past max_tokens.
    With no stop sequences and no max_tokens every piece passes as it comes."""

    def __init__(self, options: ReplyOptions, tokenizer: Any | None) -> None:
        self.options = options
        self.tokenizer = tokenizer
        self.text = ""  # everything written so far
        self.passed = 0  # characters of it passed on
        self.cut = False

    def feed(self, piece: str) -> str:
        """What of the reply may be passed on now that `piece` was written ("" for nothing)."""
        if self.cut:
            return ""
        self.text += piece
        clipped, cut = clip(self.text, self.options, self.tokenizer)
        end = len(clipped) if cut else len(self.text) - self._held()
        self.cut = cut is not None
        out = clipped[self.passed:end] if end > self.passed else ""
        self.passed = max(self.passed, end)
        return out

    def _held(self) -> int:
        """Characters at the end of the text that are the start of a stop sequence."""
        return max((size for stop in self.options.stop for size in range(1, len(stop))
                    if self.text.endswith(stop[:size])), default=0)
