"""Contact details: email addresses and phone numbers.

Canonical forms:
  email  lower case: "jane.doe@example.com"
  phone  digits only, "+" kept when the user gave a country code: "4155550100", "+14155550100"
         (no country is guessed)
"""

from __future__ import annotations

import re

from app.dialogue.slot_types.base import (
    EXACT, Labels, Match, SlotType, drop_overlaps, register,
)

_EMAIL = re.compile(r"(?<![\w.+-])[a-z0-9][a-z0-9._%+-]*@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}(?![\w-])", re.I)
_SEP = r"(?:[\s.-]|,\s?)"  # "415-555-0100", "415 555 0100", "415, 555, 0100" (spoken pauses)
_PHONES = (
    re.compile(rf"(?<![\w+])(?:\+?1{_SEP}?)?(?:\(\d{{3}}\)\s?|\d{{3}}{_SEP})\d{{3}}{_SEP}\d{{4}}(?![\w]|[.-]?\d)"),
    re.compile(r"(?<![\w+])\+\d{1,3}(?:[\s.-]?\d{2,4}){2,5}(?![\w]|[.-]?\d)"),  # "+44 20 7946 0958"
)
_BARE_DIGITS = re.compile(r"(?<![\w.,$€£+-])\d+(?![\w]|[.,]\d)")


@register
class Email(SlotType):
    name = "email"
    priority = 10  # first: its digits ("jane4512@...") are nobody else's
    default_mentions = ("email",)

    def extract(self, text: str, labels: Labels, *, requested: bool) -> list[Match]:
        return [Match(m.group(), EXACT, m.span()) for m in _EMAIL.finditer(text)]

    def normalise(self, raw: str) -> str:
        return raw.lower()


@register
class Phone(SlotType):
    """A formatted number anywhere; 7 to 15 bare digits only beside a phone label or as the asked-for answer."""

    name = "phone"
    priority = 20
    default_mentions = ("phone number", "my number", "phone", "mobile", "call me", "reach me")
    glue = ("is", "was", "it", "it'?s", "at", "on", "number", "no")

    def extract(self, text: str, labels: Labels, *, requested: bool) -> list[Match]:
        matches = drop_overlaps([Match(m.group(), EXACT, m.span()) for p in _PHONES for m in p.finditer(text)])
        digits = (m for m in _BARE_DIGITS.finditer(text) if 7 <= len(m.group()) <= 15)
        self.add_named_or_answer(text, labels, digits, matches, requested=requested)
        return matches

    def normalise(self, raw: str) -> str:
        return ("+" if raw.startswith("+") else "") + re.sub(r"\D", "", raw)
