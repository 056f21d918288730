"""Slots whose values are the domain's own words: product, issue, or any `category` a domain lists.

The earliest synonym in the text wins; the longest at one position ("desk lamp" over "desk").
Canonical form: the canonical value from the domain ("coffee_maker", "damaged").
"""

from __future__ import annotations

import re
from functools import lru_cache

from app.dialogue.slot_types.base import NAMED, Labels, Match, SlotType, register


@register
class Category(SlotType):
    """Values listed under the slot's `values` in the domain file, each with its synonyms."""

    name = "category"
    vocabulary = True

    def extract(self, text: str, labels: Labels, *, requested: bool) -> list[Match]:
        pairs = tuple((syn, canonical) for canonical, syns in self.values.items() for syn in syns)
        pattern, _ = _vocabulary_pattern(pairs)
        match = pattern.search(text.lower().replace("\u2019", "'"))
        return [] if match is None else [Match(match.group(), NAMED, match.span())]

    def normalise(self, raw: str) -> str:
        pairs = tuple((syn, canonical) for canonical, syns in self.values.items() for syn in syns)
        pattern, canonicals = _vocabulary_pattern(pairs)
        match = pattern.fullmatch(raw.lower())
        assert match is not None and match.lastgroup is not None, raw  # raw came from extract
        return canonicals[int(match.lastgroup[1:])]


@register
class Product(Category):
    name = "product"


@register
class Issue(Category):
    name = "issue"


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
