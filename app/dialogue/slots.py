"""Fill slots from one utterance: typed text, a speech transcript or OCR text.

Each slot has a type (app/dialogue/slot_types/): a small class that finds values of its kind and writes
them one way. Pattern types run in priority order (email, phone, amount, tracking number, error code,
date, order id) on the text with spoken forms rewritten, and each match is blanked out before the next
type runs, so the digits of a phone number or a price can never be read again as an order id. Values
are typed by their labels as well as their shape: "ERROR E-203" is an error code and "Order 5520-Z" an
order id. Bare digit runs only count when something says what they are: a label right before them
("order number is 4512") or, for a one-word answer, the slot the assistant just asked for. Every
registered pattern type runs, even one the domain has no slot of, so that its values are never taken
for another type's. Vocabulary types (product, issue) read the domain's own words from the text as written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from app.dialogue.domain import SlotSpec
from app.dialogue.slot_types import SLOT_TYPES, Labels, Match, SlotType, slot_type
from app.dialogue.spoken import normalize_spoken

__all__ = ["SlotValue", "extract_slots", "normalize_spoken"]

SPOKEN_FACTOR = 0.9  # rebuilt from spoken words: the recogniser may have misheard a digit


@dataclass(frozen=True)
class SlotValue:
    value: str
    confidence: float  # 0..1


def extract_slots(
    text: str, slots: Mapping[str, SlotSpec], *, requested_slot: str | None = None
) -> dict[str, SlotValue]:
    """Return {slot name: value} for every slot of `slots` found in `text`."""
    work = normalize_spoken(text)
    runs = _pattern_runs(slots, requested_slot)
    labels = Labels(work, _mentions_by_type(runs))
    found: dict[str, SlotValue] = {}
    for name, kind in runs:
        matches = kind.extract(work, labels, requested=name is not None and name == requested_slot)
        values = [m for m in matches if m.claims]
        if name is not None and values:
            # A value the text names beats an earlier unnamed one ("Error 0x80070005 ... Order KX-90817").
            first = min(values, key=lambda m: (not m.named, m.span))
            heard = work[first.span[0] : first.span[1]]
            found[name] = SlotValue(kind.normalise(first.raw), _spoken_confidence(first.confidence, heard, text))
        work = _blank(work, matches)  # later types cannot reuse these characters
    for name, spec in slots.items():
        kind = _instance(spec)
        if kind.vocabulary and (match := next(iter(kind.extract(text, labels, requested=False)), None)):
            found[name] = SlotValue(kind.normalise(match.raw), match.confidence)
    return {name: found[name] for name in slots if name in found}


def _instance(spec: SlotSpec) -> SlotType:
    return slot_type(spec.type, spec.mentions, tuple(spec.values.items()))


def _pattern_runs(slots: Mapping[str, SlotSpec], requested_slot: str | None) -> list[tuple[str | None, SlotType]]:
    """(slot name, type instance) in the order they read the text: by type priority, the asked-for slot
    first among slots of one type; a type the domain has no slot of runs once, unnamed, on its defaults."""
    runs: list[tuple[str | None, SlotType]] = []
    for type_name, cls in sorted(SLOT_TYPES.items(), key=lambda item: item[1].priority):
        if cls.vocabulary:
            continue
        of_type = sorted((name for name, spec in slots.items() if spec.type == type_name),
                         key=lambda name: name != requested_slot)
        runs += [(name, _instance(slots[name])) for name in of_type] or [(None, slot_type(type_name))]
    return runs


def _mentions_by_type(runs: list[tuple[str | None, SlotType]]) -> dict[str, tuple[str, ...]]:
    mentions: dict[str, tuple[str, ...]] = {}
    for _, kind in runs:
        mentions[kind.name] = mentions.get(kind.name, ()) + kind.mentions
    return mentions


def _blank(text: str, matches: list[Match]) -> str:
    for match in matches:
        start, end = match.span
        text = text[:start] + " " * (end - start) + text[end:]
    return text


def _spoken_confidence(confidence: float, matched: str, original: str) -> float:
    """Lower the confidence when the matched text only exists after spoken-form rewriting."""
    def compact(s: str) -> str:
        return re.sub(r"[^a-z0-9]", "", s.lower())

    return confidence if compact(matched) in compact(original) else round(confidence * SPOKEN_FACTOR, 3)
