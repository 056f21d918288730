"""Ids and codes: order ids, error codes, tracking numbers. Alike in shape, told apart by their labels.

Canonical forms:
  order_id         upper case, dashes and letter prefixes/suffixes kept: "A7Q-4412", "KX90817", "1111-A", "4512";
                   a spaced prefix is glued ("KX 90817" -> "KX90817"), a spaced suffix dashed ("1111 A" -> "1111-A")
  error_code       upper case, a hex prefix written "0x": "E-203", "0x80070005", "404"
  tracking_number  upper case, spaces dropped: "1Z999AA10123456784"
"""

from __future__ import annotations

import re

from app.dialogue.slot_types.base import (
    EXACT, NAMED, NOT_A_SLOT_TYPE, Labels, Match, SlotType, free, register,
)

MAX_ID_LENGTH = 20  # longer letter/digit tokens are tracking numbers, hashes or URLs
MIN_TRACKING_CHARS = 6
MAX_TRACKING_CHARS = 35

_CODE = re.compile(r"(?<![\w@.+-])[a-z0-9]+(?:-[a-z0-9]+)*(?![\w@-]|\.\w)", re.I)
# An id with letters ending in >= 3 digits ("A7Q-4412", "kx90817"), or >= 3 digits with a short letter
# suffix after a dash ("1111-A", "5520-Z"). Requiring the digits at the end keeps model names such as
# "WH-1000XM4" out.
_ID_SHAPE = re.compile(r"(?=.*[a-z])[a-z0-9-]*\d{3,}|[a-z0-9-]*\d{3,}-[a-z]{1,3}", re.I)
# Digits a transcriber split up: "1, 2, 7, 7", "2-9-214", "4 5 1 2"; joined only where the order is named.
_SPLIT_DIGITS = re.compile(r"(?<![\w.$€£+-])\d{1,4}(?:(?:, ?|-| )\d{1,4})+(?![\w]|[.,]\d)")
_SPACED_CODE = re.compile(r"(?<![\w-])([A-Z]{1,4}) (\d{3,12})(?![\w-])")  # "KX 90817" (case-sensitive)
# "1111 A": a transcriber's spacing of a letter suffix; taken only where the order is named.
_SPACED_SUFFIX = re.compile(r"(?<![\w.,$€£+-])\d{3,12} [A-Z](?=[.,!?;:]?(?:\s|$))")
_BARE_DIGITS = re.compile(r"(?<![\w.,$€£+-])\d+(?![\w]|[.,]\d)")
# Upper-case words that precede digits on receipts and forms but are not id prefixes.
_NOT_ID_PREFIXES = frozenset("A I ID NO NR NUM REF USD EUR GBP CAD AUD QTY SKU TEL FAX PIN ZIP APT OK".split())
_ERROR_VALUE = re.compile(r"(?<![\w@.+-])(?=[\w-]*\d)[a-z0-9]+(?:-[a-z0-9]+)*(?![\w@-]|\.\w)", re.I)
_HEX_CODE = re.compile(r"(?<![\w.-])0x[0-9a-f]{4,16}(?![\w-])", re.I)  # "0x80070005": an error, whatever the label
# Groups that each hold a digit, split by single spaces or dashes: "1Z 999 AA1". Written so that no
# character can be matched two ways (no backtracking blow-up on a hostile run of digits).
_TRACKING_VALUE = re.compile(r"(?<![\w-])(?=[a-z]*\d)[a-z0-9]+(?:[ -](?=[a-z]*\d)[a-z0-9]+)*(?![\w-])", re.I)
_UPS = re.compile(r"(?<!\w)1Z[0-9A-Z]{16}(?!\w)")  # UPS: an unlabelled tracking number

_ID_GLUE = ("is", "was", "it", "it'?s", "no", "number", "num", "nr", "id", "ref", "reference")


@register
class OrderId(SlotType):
    """The default id: a code-shaped token with no other label is an order id; bare digits need a label."""

    name = "order_id"
    priority = 90  # last of the ids: codes that other labels claim are gone by then
    default_mentions = ("order number", "order id", "order")
    glue = _ID_GLUE

    def extract(self, text: str, labels: Labels, *, requested: bool) -> list[Match]:
        # A code another type's label names ("Error E-203", "Tracking ...") was taken and blanked by that type
        # already; what is left is an order id unless its label says it is nothing ("zip code").
        matches = []
        for m in _CODE.finditer(text):
            kind = labels.type_before(text, m.start(), self.glue)
            if len(m.group()) <= MAX_ID_LENGTH and _ID_SHAPE.fullmatch(m.group()) and kind != NOT_A_SLOT_TYPE:
                matches.append(Match(m.group(), EXACT, m.span(), named=kind == self.name))
        for m in _SPACED_CODE.finditer(text):
            kind = labels.type_before(text, m.start(), self.glue)
            if m.group(1) in _NOT_ID_PREFIXES or not free(m.span(), matches) or kind == NOT_A_SLOT_TYPE:
                continue
            # Two separate words are a weaker signal than one glued token, unless the order is named.
            named = kind == self.name
            matches.append(Match(m.group(), EXACT if named else NAMED, m.span(), named=named))
        for m in _SPACED_SUFFIX.finditer(text):
            if free(m.span(), matches) and self.labelled(text, labels, m.start()):
                matches.append(Match(m.group(), NAMED, m.span(), named=True))
        for m in _SPLIT_DIGITS.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if 3 <= len(digits) <= 12 and free(m.span(), matches) and self.labelled(text, labels, m.start()):
                matches.append(Match(m.group(), NAMED, m.span(), named=True))
        bare = (m for m in _BARE_DIGITS.finditer(text) if 3 <= len(m.group()) <= 12)
        self.add_named_or_answer(text, labels, bare, matches, requested=requested)
        return matches

    def normalise(self, raw: str) -> str:
        if not re.search(r"[a-z]", raw, re.I):
            return re.sub(r"\D", "", raw)  # "1, 2, 7, 7" -> "1277"
        spaced_suffix = re.sub(r"^(\d+) ([A-Z])$", r"\1-\2", raw)  # "1111 A" -> "1111-A", as ids are written
        return re.sub(r"[\s,]", "", spaced_suffix.upper())  # "KX 90817" -> "KX90817"


@register
class ErrorCode(SlotType):
    """A code beside "Error" or "Code" ("ERROR E-203", "Error code: 0x80070005"); hex codes need no label."""

    name = "error_code"
    priority = 50
    default_mentions = ("error code", "error", "fault code", "fault", "err", "code", "status code")
    glue = ("is", "was", "it", "it'?s", "number", "no", "nr", "shows", "says")

    def extract(self, text: str, labels: Labels, *, requested: bool) -> list[Match]:
        matches = [Match(m.group(), EXACT, m.span(), named=self.labelled(text, labels, m.start()))
                   for m in _HEX_CODE.finditer(text)]
        codes = (m for m in _ERROR_VALUE.finditer(text) if len(m.group()) <= MAX_ID_LENGTH)
        self.add_named_or_answer(text, labels, codes, matches, requested=requested)
        return matches

    def normalise(self, raw: str) -> str:
        code = raw.upper()
        return "0x" + code[2:] if code.startswith("0X") else code


@register
class TrackingNumber(SlotType):
    """The digits-and-letters run beside "Tracking" ("Tracking 1Z 999 AA1"), or a UPS number anywhere."""

    name = "tracking_number"
    priority = 40
    default_mentions = ("tracking number", "tracking no", "tracking id", "tracking code", "tracking #", "tracking",
                        "waybill", "consignment number", "parcel number")
    glue = _ID_GLUE

    def extract(self, text: str, labels: Labels, *, requested: bool) -> list[Match]:
        matches = [Match(m.group(), EXACT, m.span(), named=self.labelled(text, labels, m.start()))
                   for m in _UPS.finditer(text)]
        runs = (m for m in _TRACKING_VALUE.finditer(text)
                if MIN_TRACKING_CHARS <= len(re.sub(r"[\s-]", "", m.group())) <= MAX_TRACKING_CHARS)
        self.add_named_or_answer(text, labels, runs, matches, requested=requested)
        return matches

    def normalise(self, raw: str) -> str:
        return re.sub(r"\s", "", raw.upper())
