"""Amounts of money: "$37.50", "45 dollars and 99 cents", "Total: 89.99", a card line "VISA ****1234 $37.50".

Canonical form: currency symbol + two decimals ("$37.50", "€15.00", "£8.99"); no symbol when none
was written ("37.50" after "I was charged 37.50").
"""

from __future__ import annotations

import re
from decimal import Decimal

from app.dialogue.slot_types.base import ANSWER, EXACT, NAMED, Labels, Match, SlotType, bare_answer, drop_overlaps, free, register

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
# The masked number on a card line ("VISA ****1234", "Card xxxx-1234"): never an id, a phone or an amount.
_MASKED_CARD = re.compile(r"(?<![\w*•])[*xX•]{2,}(?:[\s-][*xX•]{2,})*[\s-]?\d{4}(?!\w)")


@register
class Amount(SlotType):
    name = "amount"
    priority = 30
    default_mentions = ("amount", "charged", "charge", "total", "paid", "price")
    glue = ("is", "was", "it", "it'?s", "of", "for", "by", "about", "around", "due")

    def extract(self, text: str, labels: Labels, *, requested: bool) -> list[Match]:
        cards = [Match(m.group(), EXACT, m.span(), claims=False) for m in _MASKED_CARD.finditer(text)]
        for card in cards:  # read on past the masked digits: "Card **** 1234 37.50" names the 37.50
            text = text[: card.span[0]] + " " * (card.span[1] - card.span[0]) + text[card.span[1] :]
        matches = drop_overlaps([Match(m.group(), EXACT, m.span(), named=self.labelled(text, labels, m.start()))
                                 for p in _AMOUNTS for m in p.finditer(text)])
        for m in _BARE_DECIMAL.finditer(text):
            if free(m.span(), matches) and self.labelled(text, labels, m.start()):
                matches.append(Match(m.group(), NAMED, m.span(), named=True))
        answer = bare_answer(text) if requested and not matches else None
        if answer and re.fullmatch(r"\d+(?:\.\d{1,2})?", answer):
            start = text.find(answer)
            matches.append(Match(answer, ANSWER, (start, start + len(answer))))
        return cards + matches

    def normalise(self, raw: str) -> str:
        for pattern in _AMOUNTS:
            m = pattern.search(raw)
            if m:
                word = m.group("cur").lower().rstrip("s")  # "dollars" -> "dollar"
                cents = m.groupdict().get("cents")
                number = m.group("num") + (f".{int(cents):02d}" if cents and "." not in m.group("num") else "")
                return _money(_CURRENCY.get(word, ""), number)
        return _money("", raw.strip())


def _money(symbol: str, number: str) -> str:
    return f"{symbol}{Decimal(number.replace(',', '')):.2f}"
