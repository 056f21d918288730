"""Draft tokens for speculative decoding, looked up in the sequence itself (prompt-lookup decoding).

A reply mostly copies spans of its prompt: the policy's draft sits in the system message, and the
reply rewords it. When the last few tokens of the sequence occurred before, the tokens that followed
them then are a good guess of what follows now; the decoder verifies such a guess in one forward
pass (CausalLMDecoder.verify) and keeps the longest prefix it would have chosen itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NGRAM_SIZES = (3,)  # a shorter match ("I'm", "your order") is often followed by something else, and a pass over
# rejected draft tokens costs about as much as a step (a pass over 1 + 1 tokens took 1.6x a one-token step here)


@dataclass
class PromptLookup:
    """One sequence's tokens (prompt, then reply) and where each n-gram last occurred with a continuation."""

    ids: list[int]
    _after: dict[tuple[int, ...], int] = field(default_factory=dict)  # n-gram -> index of the token that followed

    def __post_init__(self) -> None:
        tokens, self.ids = self.ids, []
        self.extend(tokens)

    def extend(self, tokens: list[int]) -> None:
        for token in tokens:
            end = len(self.ids)  # the index `token` takes: n-grams ending just before it now have a continuation
            for n in NGRAM_SIZES:
                if end >= n:
                    self._after[tuple(self.ids[end - n:end])] = end
            self.ids.append(token)

    def propose(self, limit: int) -> list[int]:
        """Up to `limit` tokens that followed the latest earlier occurrence of the sequence's last n-gram."""
        if limit <= 0:
            return []
        for n in NGRAM_SIZES:
            start = self._after.get(tuple(self.ids[-n:])) if len(self.ids) >= n else None
            if start is not None:
                return self.ids[start:start + limit]
        return []
