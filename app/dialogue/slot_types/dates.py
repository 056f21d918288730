"""Dates and weekdays beside a label: "Expected: Friday", "Delivery: 12 Aug", "Arrives Mon, March 3".

A date needs its label (or the question just asked): receipts carry order and print dates that answer
nothing. Canonical forms: weekdays and months written out and capitalised ("Friday", "Monday 12 August",
"March 3, 2025"), ISO and numeric dates kept as written ("2025-03-07", "07/03/2025"), "Today"/"Tomorrow".
"""

from __future__ import annotations

import re

from app.dialogue.slot_types.base import ANSWER, NAMED, Labels, Match, SlotType, register

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
_WEEKDAY = r"(?:mon|tues?|wed(?:nes)?|thu(?:rs?)?|fri|sat(?:ur)?|sun)(?:day)?\.?"
_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|" \
         r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
_DATE = re.compile(
    rf"(?<!\w)(?:\d{{4}}-\d{{2}}-\d{{2}}|\d{{1,2}}[/.]\d{{1,2}}(?:[/.]\d{{2,4}})?"
    rf"|(?:{_WEEKDAY},?\s+)?(?:{_DAY}\s+{_MONTH}|{_MONTH}\s+{_DAY})(?:,?\s+\d{{4}})?"
    rf"|{_WEEKDAY}|today|tomorrow|tonight)(?!\w)",
    re.I,
)


@register
class Date(SlotType):
    name = "date"
    priority = 60
    default_mentions = ("expected delivery", "estimated delivery", "expected", "delivery date", "delivery",
                        "arrives", "arriving", "arrival", "eta", "due", "delivered by")
    glue = ("is", "was", "it", "it'?s", "on", "by", "date", "day", "for", "be", "will", "should")

    def extract(self, text: str, labels: Labels, *, requested: bool) -> list[Match]:
        matches = []
        for m in _DATE.finditer(text):
            if self.labelled(text, labels, m.start()):
                matches.append(Match(m.group(), NAMED, m.span(), named=True))
            elif requested and _only_date(text, m):
                matches.append(Match(m.group(), ANSWER, m.span()))
        return matches

    def normalise(self, raw: str) -> str:
        words = re.findall(r"[a-z]+|\d+", raw.lower())
        if not any(w.isalpha() for w in words):
            return raw.strip()  # "2025-03-07", "07/03/2025"
        out = []
        for word in words:
            if word.isdigit():
                out.append(word)
            elif word in ("st", "nd", "rd", "th"):
                continue
            else:
                out.append(_full_name(word).capitalize())
        text = " ".join(out)
        return re.sub(r"(\w+ \d{1,2}) (\d{4})$", r"\1, \2", text)  # "March 3 2025" -> "March 3, 2025"


def _full_name(word: str) -> str:
    for name in WEEKDAYS + MONTHS:
        if name.startswith(word[:3]) and (word in name or name in word or len(word) == 3):
            return name
    return word


def _only_date(text: str, match: re.Match[str]) -> bool:
    rest = (text[: match.start()] + text[match.end() :]).lower()
    return not re.sub(r"\b(?:it'?s|it|is|on|by|the|sure|ok|okay|yes)\b|\W", "", rest)
