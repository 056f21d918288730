"""Split one message (typed, or a speech transcript) into clauses, and spot a correction.

Customers put several acts in one message: "Where is my order? The order number is 4512." asks one
thing and tells another; the tracker reads an act from each clause. Clauses end at sentence marks,
before "and"/"but" that start a new subject ("I sent it back and there's still no refund"), and, for
transcripts without punctuation, before a clause that names a slot ("where is my order the order
number is 4512").
"""

from __future__ import annotations

import re
from functools import lru_cache

# "order no. 4512", "approx. 3 days": a period after these words ends no sentence.
_ABBREVIATION = re.compile(r"\b(?:no|nr|ref|approx|st|mr|mrs|ms|dr|vs|etc|e\.g|i\.e|inc|ltd|co)\.$", re.I)
_SENTENCE_END = re.compile(r"(?<=[.?!;])[^\S\n]+|\s*\n\s*")
_NEW_SUBJECT = re.compile(
    r",?\s+(?:and|but|so)\s+(?=(?:i|i'm|i've|i'd|i'll|it|it's|there|there's|they|we|you|he|she|nothing)\b)", re.I
)
_CORRECTION = re.compile(
    r"\b(?:wrong|incorrect)\s+(?:\w+\s+)?(?:number|one|id|email|address|code|order|digits?|details?)\b"
    r"|\bgave you the wrong\b|\bi\s+meant?\b|\bactually\b|\bcorrection\b|\btypo\b|\bmis(?:typed|spoke|spelled)\b"
    r"|\bmy (?:mistake|bad)\b|\bshould (?:be|have been|read)\b|\bmake that\b|\bthe right (?:one|number)\b"
    r"|\bnot\s+[\w@.-]*\d[\w@.-]*\b"
    r"|^\W*(?:no|nope|sorry|oops)\b\W*(?:it'?s|it is|that'?s|that is|the|my)\b",
    re.I,
)


def split_clauses(text: str, mentions: tuple[str, ...] = ()) -> list[str]:
    """The clauses of `text`, in order; `mentions`: slot names that start a clause of their own
    ("... the order number is 4512") when the text has no punctuation to split at."""
    clauses = []
    for sentence in _sentences(text):
        for part in _NEW_SUBJECT.split(sentence):
            clauses += _named_slot_start(mentions).split(part) if mentions else [part]
    return [c.strip() for c in clauses if re.search(r"\w", c)]


def _sentences(text: str) -> list[str]:
    sentences: list[str] = []
    for piece in _SENTENCE_END.split(text):
        if sentences and _ABBREVIATION.search(sentences[-1]) and "\n" not in sentences[-1]:
            sentences[-1] += " " + piece  # "order no. 4512" is one sentence
        else:
            sentences.append(piece)
    return sentences


def is_correction(text: str) -> bool:
    """The user says that something they told us was wrong ("sorry, I gave you the wrong number")."""
    return bool(_CORRECTION.search(text))


def correction_rest(text: str, *, old_value: str, mentions: tuple[str, ...]) -> str:
    """What a correction says besides its own words, the old value and the slot's name: "no, not 4512,
    it's 4513" -> "4513", "I meant 4513, not 4512" -> "4513", "the right order number is 4513" -> "4513"."""
    rest = re.sub(re.escape(old_value), " ", text, flags=re.I) if old_value else text
    for mention in sorted(mentions, key=len, reverse=True):
        rest = re.sub(rf"\b{re.escape(mention)}\b", " ", rest, flags=re.I)
    return _CORRECTION_WORDS.sub(" ", rest)


_CORRECTION_WORDS = re.compile(
    r"\b(?:(?:right|correct|wrong) one|(?:hold|hang) on|no|nope|not|wait|sorry|oops|oh|actually|i|meant|mean|it'?s|it|is|should|be|have|"
    r"been|read|make|that|wrong|right|correct|correction|the|my|was|gave|you|typo|mistake|instead|of|but|rather|"
    r"number)\b", re.I  # "one" only in "the right one": alone it is a digit ("four five one three")
)


@lru_cache(maxsize=8)
def _named_slot_start(mentions: tuple[str, ...]) -> re.Pattern[str]:
    names = "|".join(re.escape(m).replace(r"\ ", r"\s+") for m in sorted(mentions, key=len, reverse=True))
    return re.compile(rf"(?<=\w)\s+(?=(?:my|the|our)\s+(?:{names})\s+(?:is|was|it'?s)\b)", re.I)
