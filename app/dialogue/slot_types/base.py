"""What a slot type is: a small class that finds its values in text (`extract`) and writes them one way
(`normalise`), registered by name so that a domain file can declare slots of any registered type.

Values are typed by their context as well as their shape. Every type names its labels (the slot's
`mentions`, or the type's `default_mentions`); `Labels` finds them all in a text once, so a value
beside "Order" is an order id, beside "Error" an error code and beside "Tracking" a tracking number,
however alike the three look. Of overlapping labels the longest wins ("order code" over "code").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

EXACT = 0.95  # the text has the value's own shape: "A7Q-4412", "jane@x.com", "$37.50"
NAMED = 0.9  # a value its label names ("order number is 4512"), or a vocabulary word
ANSWER = 0.8  # a bare value accepted only because we had just asked for this slot
LABEL_REACH = 48  # characters before a value searched for its label
# Phrases that label a value no slot type takes: "zip code 94107" is neither an error code nor an id.
NOT_A_SLOT_TYPE = ""  # what Labels.type_before says for them
NOT_A_SLOT = ("zip code", "postal code", "post code", "promo code", "discount code", "coupon code", "voucher code",
              "gift card", "verification code", "security code", "area code", "country code", "qty", "quantity")
# Words dropped when deciding whether an answer is "essentially just the value"; the correction words
# let "no, it's 4513" and "I meant 4513" answer as well as "it's 4513".
_FILLERS = frozenset(
    "it it's its is was the my sure yes yeah yep ok okay here you go that's thats that "
    "um uh er so well oh please i think believe number no sorry actually meant mean i'm oops".split()
)


@dataclass(frozen=True)
class Match:
    raw: str  # the matched text as the extractor read it (spoken forms already rewritten)
    confidence: float  # 0..1
    span: tuple[int, int]  # in the text given to `extract`
    named: bool = False  # a label of this type stands right before it ("Order KX-90817")
    claims: bool = True  # False: only blanked, so later types cannot read it (a masked card number)


class Labels:
    """Every label of every slot type in one text, with the type it names (NOT_A_SLOT_TYPE for NOT_A_SLOT)."""

    def __init__(self, text: str, mentions: Mapping[str, tuple[str, ...]]) -> None:
        phrases = {phrase: kind for kind, names in mentions.items() for phrase in names}
        phrases |= dict.fromkeys(NOT_A_SLOT, NOT_A_SLOT_TYPE)
        found = [(m.start(), m.end(), phrases[_squash(m.group())]) for m in _label_pattern(tuple(phrases)).finditer(text)]
        self.found = sorted(found, key=lambda f: (-f[1], f[0]))  # nearest end first; at one end, the longest

    def type_before(self, text: str, start: int, glue: tuple[str, ...]) -> str | None:
        """The type named by the label just before `start`, with only `glue` words between; None if none.
        `text` may have values blanked since the labels were found: a blanked label names nothing."""
        between = _glue_pattern(glue)
        for label_start, label_end, kind in self.found:
            if label_end > start or start - label_end > LABEL_REACH or not text[label_start:label_end].strip():
                continue
            if between.fullmatch(text[label_end:start]):
                return kind
        return None


class SlotType:
    """One kind of slot value. Subclasses set `name` and implement `extract` and `normalise`.

    An instance serves one slot (or, with the defaults, a domain that has no slot of this type: the type
    still runs so that its values are never read as another type's). Pattern types run in `priority`
    order on the text, each match blanked before the next type runs; vocabulary types read the domain's
    own words from the text as written.
    """

    name: ClassVar[str]
    priority: ClassVar[int] = 50  # pattern types: lower runs first
    vocabulary: ClassVar[bool] = False  # values come from the slot's `values` in the domain file
    default_mentions: ClassVar[tuple[str, ...]] = ()  # labels used when a domain has no slot of this type
    glue: ClassVar[tuple[str, ...]] = ("is", "was", "it", "it'?s")  # words allowed between a label and a value

    def __init__(self, mentions: tuple[str, ...], values: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self.mentions = mentions or self.default_mentions
        self.values = dict(values or {})

    def extract(self, text: str, labels: Labels, *, requested: bool) -> list[Match]:
        """Every value of this type in `text`; `requested`: the assistant just asked for this slot."""
        raise NotImplementedError

    def normalise(self, raw: str) -> str:
        """The one written form of a matched value."""
        raise NotImplementedError

    def labelled(self, text: str, labels: Labels, start: int) -> bool:
        return labels.type_before(text, start, self.glue) == self.name

    def unlabelled_or_own(self, text: str, labels: Labels, start: int) -> bool:
        return labels.type_before(text, start, self.glue) in (None, self.name)

    def add_named_or_answer(self, text: str, labels: Labels, found: Iterable[re.Match[str]], matches: list[Match], *,
                            requested: bool) -> None:
        """Append each candidate in `found` that overlaps no match yet and that a label of this type names,
        or that is the whole answer to this slot's own question ("4512" right after "what is your order
        number?")."""
        answer = bare_answer(text) if requested else None
        for m in found:
            if not free(m.span(), matches):
                continue
            if self.labelled(text, labels, m.start()):
                matches.append(Match(m.group(), NAMED, m.span(), named=True))
            elif answer == m.group().lower():
                matches.append(Match(m.group(), ANSWER, m.span()))


SLOT_TYPES: dict[str, type[SlotType]] = {}


def register(cls: type[SlotType]) -> type[SlotType]:
    """Class decorator: make `cls` available to domain files under `cls.name`."""
    if cls.name in SLOT_TYPES and SLOT_TYPES[cls.name] is not cls:
        raise ValueError(f"slot type '{cls.name}' is already registered by {SLOT_TYPES[cls.name].__qualname__}")
    SLOT_TYPES[cls.name] = cls
    return cls


@lru_cache(maxsize=256)
def slot_type(name: str, mentions: tuple[str, ...] = (), values: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> SlotType:
    """The (cached) instance of type `name` for one slot's mentions and values."""
    return SLOT_TYPES[name](mentions, dict(values))


# --- helpers the types share ----------------------------------------------------


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def free(span: tuple[int, int], taken: Iterable[Match]) -> bool:
    return not any(overlaps(span, m.span) for m in taken)


def drop_overlaps(matches: list[Match]) -> list[Match]:
    """Keep the earliest, then longest, of overlapping matches from different patterns."""
    kept: list[Match] = []
    for match in sorted(matches, key=lambda m: (m.span[0], -m.span[1])):
        if free(match.span, kept):
            kept.append(match)
    return kept


def bare_answer(text: str) -> str | None:
    """The single meaningful word of a short answer ("sure, it's 4512." -> "4512")."""
    words = [w.strip(",.!?:;\"()") for w in text.lower().replace("\u2019", "'").split()]
    rest = [w for w in words if w and w not in _FILLERS]
    return rest[0] if len(rest) == 1 else None


def _squash(phrase: str) -> str:
    return " ".join(phrase.lower().split())


@lru_cache(maxsize=64)
def _label_pattern(phrases: tuple[str, ...]) -> re.Pattern[str]:
    names = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{names})(?!\w)", re.I)


@lru_cache(maxsize=64)
def _glue_pattern(glue: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(rf"(?:\W|\b(?:{'|'.join(glue)})\b)*", re.I)
