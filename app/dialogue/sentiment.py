"""Per-turn sentiment with VADER, used to hand angry users to a human.

VADER (Hutto & Gilbert, ICWSM 2014) is a rule-based lexicon tuned for short,
informal text, which is what chat turns and speech transcripts are. It needs no
model download and scores a turn in microseconds, so it runs on every turn.
"""

from __future__ import annotations

from dataclasses import dataclass

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

# Words VADER scores as negative that, in a support chat, name the problem or apologise for a slip, not a mood:
# "sorry, I meant 4513", "what does this error mean?", "oops, typo". Left in, they made the reply open with
# empathy for frustration the customer never showed. Words that do complain ("wrong", "broken", "late") stay.
NEUTRAL_HERE = ("sorry", "oops", "typo", "mistake", "error", "errors", "jam", "jammed")
# VADER's published cut-offs on the compound score.
NEGATIVE_AT_OR_BELOW = -0.05
POSITIVE_AT_OR_ABOVE = 0.05


@dataclass(frozen=True)
class Sentiment:
    label: str  # "negative" | "neutral" | "positive"
    score: float  # VADER compound score in [-1, 1]


class SentimentAnalyzer:
    """Callable wrapper so the lexicon is parsed once, not per turn."""

    def __init__(self) -> None:
        self._vader = SentimentIntensityAnalyzer()
        for word in NEUTRAL_HERE:
            self._vader.lexicon.pop(word, None)

    def __call__(self, text: str) -> Sentiment:
        score = float(self._vader.polarity_scores(text)["compound"])
        return Sentiment(label=_label(score), score=score)


def _label(score: float) -> str:
    if score <= NEGATIVE_AT_OR_BELOW:
        return "negative"
    if score >= POSITIVE_AT_OR_ABOVE:
        return "positive"
    return "neutral"
