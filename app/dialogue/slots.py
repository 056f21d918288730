"""Fill slots from one utterance: typed text, a speech transcript or OCR text.

Pattern slots (email, phone, amount, order_id) are found in that order and each
match is blanked out before the next extractor runs, so the digits of a phone
number or a price can never be read again as an order id. Bare digit runs only
count as an id or a phone number when something says so: a mention right before
them ("order number is 4512") or, for a one-word answer, the slot the assistant
just asked for.

Canonical forms:
  order_id  upper case, dashes kept: "A7Q-4412", "KX90817", "4512"
  email     lower case: "jane.doe@example.com"
  phone     digits only, "+" kept when the user gave a country code:
            "4155550100", "+14155550100" (no country is guessed)
  amount    currency symbol + two decimals: "$37.50", "€15.00", "£8.99";
            no symbol when none was said ("37.50" after "I was charged 37.50")
  product/issue  the canonical value from the domain: "coffee_maker", "damaged"
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from app.dialogue.domain import CATEGORICAL_TYPES, SlotSpec
from app.dialogue.spoken import normalize_spoken

__all__ = ["SlotValue", "extract_slots", "normalize_spoken"]

EXACT = 0.95  # the text has the value's own shape: "A7Q-4412", "jane@x.com", "$37.50"
NAMED = 0.9  # bare digits named by a mention ("order number is 4512"), or a vocabulary word
ANSWER = 0.8  # a bare value accepted only because we had just asked for this slot
SPOKEN_FACTOR = 0.9  # rebuilt from spoken words: the recogniser may have misheard a digit
MAX_ID_LENGTH = 20  # longer letter/digit tokens are tracking numbers, hashes or URLs

# Mentions used when a domain has no slot of that type: the extractors still run
# so that, say, a phone number is never mistaken for an order id.
DEFAULT_MENTIONS = {
    "order_id": ("order number", "order id", "order"),
    "phone": ("phone number", "my number", "phone", "mobile", "call me", "reach me"),
    "amount": ("amount", "charged", "charge", "total", "paid", "price"),
    "email": ("email",),
}
# Words allowed between a mention and its value: "order number: 4512", "order no. 4512",
# "call me on 4155550100", "a charge of 37.50". Anything else ("since", "arrived") breaks the link.
_ORDER_GLUE = ("is", "was", "it", "it'?s", "no", "number", "num", "nr", "id", "ref", "reference")
_PHONE_GLUE = ("is", "was", "it", "it'?s", "at", "on", "number", "no")
_AMOUNT_GLUE = ("is", "was", "it", "it'?s", "of", "for", "by", "about", "around")
# Words dropped when deciding whether an answer is "essentially just the value".
_FILLERS = frozenset(
    "it it's its is was the my sure yes yeah yep ok okay here you go that's thats that "
    "um uh er so well oh please i think believe number".split()
)
# Upper-case words that precede digits on receipts and forms but are not id prefixes.
_NOT_ID_PREFIXES = frozenset("A I ID NO NR NUM REF USD EUR GBP CAD AUD QTY SKU TEL FAX PIN ZIP APT OK".split())

_EMAIL = re.compile(r"(?<![\w.+-])[a-z0-9][a-z0-9._%+-]*@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}(?![\w-])", re.I)
_SEP = r"(?:[\s.-]|,\s?)"  # "415-555-0100", "415 555 0100", "415, 555, 0100" (spoken pauses)
_PHONES = (
    re.compile(rf"(?<![\w+])(?:\+?1{_SEP}?)?(?:\(\d{{3}}\)\s?|\d{{3}}{_SEP})\d{{3}}{_SEP}\d{{4}}(?![\w]|[.-]?\d)"),
    re.compile(r"(?<![\w+])\+\d{1,3}(?:[\s.-]?\d{2,4}){2,5}(?![\w]|[.-]?\d)"),  # "+44 20 7946 0958"
)
_BARE_DIGITS = re.compile(r"(?<![\w.,$€£+-])\d+(?![\w]|[.,]\d)")
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?"
_CURRENCY = {"$": "$", "usd": "$", "dollar": "$", "buck": "$", "€": "€", "eur": "€", "euro": "€",
             "£": "£", "gbp": "£", "pound": "£", "quid": "£"}  # fmt: skip
_AMOUNTS = (
    re.compile(rf"(?<!\w)(?P<cur>[$€£]|(?:usd|eur|gbp)\b)\s?(?P<num>{_NUM})(?!\d|,\d)", re.I),
    re.compile(
        rf"(?<![\w.,])(?P<num>{_NUM})\s?(?P<cur>dollars?|bucks?|euros?|pounds?|quid|usd|eur|gbp|€)(?!\w)"
        r"(?:\s+(?:and\s+)?(?P<cents>\d{1,2})\s+cents?\b)?",
        re.I,
    ),
)
_BARE_DECIMAL = re.compile(r"(?<![\w.,$€£])\d+\.\d{2}(?![\w.])")
# An id with letters ending in >= 3 digits: "A7Q-4412", "AB-123-456", "kx90817".
# Requiring the final digits keeps model names such as "WH-1000XM4" out.
_CODE = re.compile(r"(?<![\w@.+-])[a-z0-9]+(?:-[a-z0-9]+)*(?![\w@-]|\.\w)", re.I)
_CODE_SHAPE = re.compile(r"(?=.*[a-z])[a-z0-9-]*\d{3,}", re.I)
# Digits a transcriber split up: "1, 2, 7, 7", "2-9-214", "4 5 1 2"; joined only where the order is named.
_SPLIT_DIGITS = re.compile(r"(?<![\w.$€£+-])\d{1,4}(?:(?:, ?|-| )\d{1,4})+(?![\w]|[.,]\d)")
_SPACED_CODE = re.compile(r"(?<![\w-])([A-Z]{1,4}) (\d{3,12})(?![\w-])")  # "KX 90817" (case-sensitive)


@dataclass(frozen=True)
class SlotValue:
    value: str
    confidence: float  # 0..1


@dataclass(frozen=True)
class _Match:
    value: str
    confidence: float
    span: tuple[int, int]
    named: bool = False  # the words just before it name the slot ("Order KX-90817")


@dataclass(frozen=True)
class _Context:
    mentions: tuple[str, ...]
    requested: bool  # the assistant's last question asked for this slot type


def extract_slots(
    text: str, slots: Mapping[str, SlotSpec], *, requested_slot: str | None = None
) -> dict[str, SlotValue]:
    """Return {slot name: value} for every slot of `slots` found in `text`."""
    requested_type = slots[requested_slot].type if requested_slot is not None and requested_slot in slots else None
    work = normalize_spoken(text)
    by_type: dict[str, SlotValue] = {}
    for slot_type, extractor in _PATTERN_EXTRACTORS:
        mentions = tuple(m for s in slots.values() if s.type == slot_type for m in s.mentions)
        context = _Context(mentions or DEFAULT_MENTIONS[slot_type], requested=requested_type == slot_type)
        matches = extractor(work, context)
        if matches:
            # A value the text names beats an earlier unnamed one ("Error 0x80070005 ... Order KX-90817").
            first = min(matches, key=lambda m: (not m.named, m.span))
            heard = work[first.span[0] : first.span[1]]
            by_type[slot_type] = SlotValue(first.value, _spoken_confidence(first.confidence, heard, text))
        for match in matches:  # blank every match so later extractors cannot reuse its digits
            work = work[: match.span[0]] + " " * (match.span[1] - match.span[0]) + work[match.span[1] :]
    return _assign(by_type, text, slots, requested_slot)


def _assign(
    by_type: dict[str, SlotValue], text: str, slots: Mapping[str, SlotSpec], requested_slot: str | None
) -> dict[str, SlotValue]:
    """Map values found per type onto slot names; the asked-for slot wins a shared type."""
    found: dict[str, SlotValue] = {}
    for name, spec in sorted(slots.items(), key=lambda item: item[0] != requested_slot):
        if spec.type in CATEGORICAL_TYPES:
            value = _find_vocabulary(text, spec)
            if value is not None:
                found[name] = value
        elif spec.type in by_type and not any(slots[n].type == spec.type for n in found):
            found[name] = by_type[spec.type]
    return found


def _spoken_confidence(confidence: float, matched: str, original: str) -> float:
    """Lower the confidence when the matched text only exists after spoken-form rewriting."""
    def compact(s: str) -> str:
        return re.sub(r"[^a-z0-9]", "", s.lower())

    return confidence if compact(matched) in compact(original) else round(confidence * SPOKEN_FACTOR, 3)


# --- pattern extractors --------------------------------------------------------


def _extract_email(text: str, context: _Context) -> list[_Match]:
    return [_Match(m.group().lower(), EXACT, m.span()) for m in _EMAIL.finditer(text)]


def _extract_phone(text: str, context: _Context) -> list[_Match]:
    matches = [_Match(_phone_digits(m.group()), EXACT, m.span()) for p in _PHONES for m in p.finditer(text)]
    matches = _drop_overlaps(matches)
    for m in _BARE_DIGITS.finditer(text):
        if not 7 <= len(m.group()) <= 15 or any(_overlaps(m.span(), x.span) for x in matches):
            continue
        if _named_before(text, m.start(), context.mentions, _PHONE_GLUE):
            matches.append(_Match(m.group(), NAMED, m.span(), named=True))
        elif context.requested and _bare_answer(text) == m.group():
            matches.append(_Match(m.group(), ANSWER, m.span()))
    return matches


def _extract_amount(text: str, context: _Context) -> list[_Match]:
    matches = [_amount_match(m) for pattern in _AMOUNTS for m in pattern.finditer(text)]
    matches = _drop_overlaps(matches)
    for m in _BARE_DECIMAL.finditer(text):
        if not any(_overlaps(m.span(), x.span) for x in matches) and _named_before(
            text, m.start(), context.mentions, _AMOUNT_GLUE
        ):
            matches.append(_Match(_money("", m.group()), NAMED, m.span()))
    answer = _bare_answer(text) if context.requested and not matches else None
    if answer and re.fullmatch(r"\d+(?:\.\d{1,2})?", answer):
        start = text.find(answer)
        matches.append(_Match(_money("", answer), ANSWER, (start, start + len(answer))))
    return matches


def _extract_order_id(text: str, context: _Context) -> list[_Match]:
    matches = [
        _Match(m.group().upper(), EXACT, m.span(), _named_before(text, m.start(), context.mentions, _ORDER_GLUE))
        for m in _CODE.finditer(text)
        if len(m.group()) <= MAX_ID_LENGTH and _CODE_SHAPE.fullmatch(m.group())
    ]
    for m in _SPACED_CODE.finditer(text):
        if m.group(1) in _NOT_ID_PREFIXES or any(_overlaps(m.span(), x.span) for x in matches):
            continue
        # Two separate words are a weaker signal than one glued token, unless the order is named.
        named = _named_before(text, m.start(), context.mentions, _ORDER_GLUE)
        matches.append(_Match(m.group(1) + m.group(2), EXACT if named else NAMED, m.span(), named))
    for m in _SPLIT_DIGITS.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 3 <= len(digits) <= 12 and not any(_overlaps(m.span(), x.span) for x in matches) and _named_before(
            text, m.start(), context.mentions, _ORDER_GLUE
        ):
            matches.append(_Match(digits, NAMED, m.span(), named=True))
    for m in _BARE_DIGITS.finditer(text):
        if not 3 <= len(m.group()) <= 12 or any(_overlaps(m.span(), x.span) for x in matches):
            continue
        if _named_before(text, m.start(), context.mentions, _ORDER_GLUE):
            matches.append(_Match(m.group(), NAMED, m.span(), named=True))
        elif context.requested and _bare_answer(text) == m.group():
            matches.append(_Match(m.group(), ANSWER, m.span()))
    return matches


Extractor = Callable[[str, _Context], list[_Match]]
# Order matters: each extractor's matches are blanked before the next one runs.
_PATTERN_EXTRACTORS: tuple[tuple[str, Extractor], ...] = (
    ("email", _extract_email),
    ("phone", _extract_phone),
    ("amount", _extract_amount),
    ("order_id", _extract_order_id),
)


# --- helpers -------------------------------------------------------------------


def _phone_digits(raw: str) -> str:
    return ("+" if raw.startswith("+") else "") + re.sub(r"\D", "", raw)


def _amount_match(m: re.Match[str]) -> _Match:
    word = m.group("cur").lower().rstrip("s")  # "dollars" -> "dollar"
    cents = m.groupdict().get("cents")
    number = m.group("num") + (f".{int(cents):02d}" if cents and "." not in m.group("num") else "")
    return _Match(_money(_CURRENCY.get(word, ""), number), EXACT, m.span())


def _money(symbol: str, number: str) -> str:
    return f"{symbol}{Decimal(number.replace(',', '')):.2f}"


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _drop_overlaps(matches: list[_Match]) -> list[_Match]:
    """Keep the earliest, then longest, of overlapping matches from different patterns."""
    kept: list[_Match] = []
    for match in sorted(matches, key=lambda m: (m.span[0], -m.span[1])):
        if not any(_overlaps(match.span, k.span) for k in kept):
            kept.append(match)
    return kept


@lru_cache(maxsize=64)
def _mention_pattern(mentions: tuple[str, ...], glue: tuple[str, ...]) -> re.Pattern[str]:
    names = "|".join(re.escape(m).replace(r"\ ", r"\s+") for m in sorted(mentions, key=len, reverse=True))
    return re.compile(rf"\b(?:{names})\b(?:\W|\b(?:{'|'.join(glue)})\b)*$", re.I)


def _named_before(text: str, start: int, mentions: tuple[str, ...], glue: tuple[str, ...]) -> bool:
    """True if the words just before `start` name the slot, e.g. "order number is "."""
    return bool(_mention_pattern(mentions, glue).search(text[max(0, start - 48) : start]))


def _bare_answer(text: str) -> str | None:
    """The single meaningful word of a short answer ("sure, it's 4512." -> "4512")."""
    words = [w.strip(",.!?:;\"()") for w in text.lower().replace("\u2019", "'").split()]
    rest = [w for w in words if w and w not in _FILLERS]
    return rest[0] if len(rest) == 1 else None


# --- vocabulary slots (product, issue) --------------------------------------------


def _find_vocabulary(text: str, spec: SlotSpec) -> SlotValue | None:
    """The earliest synonym in `text`; the longest wins at one position ("desk lamp" over "desk")."""
    pairs = tuple((syn, canonical) for canonical, syns in spec.values.items() for syn in syns)
    pattern, canonicals = _vocabulary_pattern(pairs)
    match = pattern.search(text.lower().replace("\u2019", "'"))
    if match is None or match.lastgroup is None:
        return None
    return SlotValue(canonicals[int(match.lastgroup[1:])], NAMED)


@lru_cache(maxsize=32)
def _vocabulary_pattern(pairs: tuple[tuple[str, str], ...]) -> tuple[re.Pattern[str], tuple[str, ...]]:
    ordered = sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)
    groups = "|".join(f"(?P<g{i}>{_synonym_regex(syn)})" for i, (syn, _) in enumerate(ordered))
    # Optional plural ending: "lamps", "dresses"; irregular plurals ("mice") are listed as synonyms.
    pattern = re.compile(rf"(?<!\w)(?:{groups})(?:e?s)?(?!\w)")
    return pattern, tuple(canonical for _, canonical in ordered)


def _synonym_regex(synonym: str) -> str:
    """"t-shirt" also matches "t shirt"/"tshirt"; "doesn't" also matches "doesnt"."""
    escaped = re.escape(synonym).replace(r"\ ", r"[\s-]+").replace(r"\-", r"[\s-]?")
    return escaped.replace("'", "'?")
