"""Dialogue domains: intents, slots and canned responses loaded from YAML.

A domain is data, not code, so operators can ship their own YAML. Everything is
validated once at load time: a typo in a domain file should fail at startup with
a message naming the intent or slot, not as a KeyError in the middle of a turn.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

DEFAULT_DOMAIN_PATH = Path(__file__).parent / "domains" / "customer_service.yaml"

# Slot types the extractor in slots.py knows how to fill.
SLOT_TYPES = frozenset({"order_id", "email", "phone", "amount", "product", "issue"})
# Types whose values come from the domain's own vocabulary rather than a pattern.
CATEGORICAL_TYPES = frozenset({"product", "issue"})


class DomainError(ValueError):
    """A domain file is malformed; the message says where and how to fix it."""


@dataclass(frozen=True)
class SlotSpec:
    name: str
    type: str  # one of SLOT_TYPES
    prompt: str  # asked when the slot is missing, e.g. "What is your order number?"
    # Categorical types only: canonical value -> lowercase synonyms (the canonical
    # value itself is always included, underscores read as spaces). Empty otherwise.
    values: Mapping[str, tuple[str, ...]]
    mentions: tuple[str, ...]  # phrases naming the slot, e.g. ("order number", "order")


@dataclass(frozen=True)
class IntentSpec:
    name: str
    examples: tuple[str, ...]
    required_slots: tuple[str, ...]
    response: str  # str.format template over required slots, said once they are filled
    keeps_active: bool  # meta intents (inform, ask_recall) leave the active task intent alone


@dataclass(frozen=True)
class Domain:
    name: str
    intents: Mapping[str, IntentSpec]
    slots: Mapping[str, SlotSpec]
    fallback_response: str
    handoff_response: str
    handoff_sentiment: float  # VADER compound at or below which a human takes over


def load_domain(path: str | Path | None = None) -> Domain:
    """Load and validate a domain; None loads the packaged customer-service domain."""
    source = Path(path) if path is not None else DEFAULT_DOMAIN_PATH
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DomainError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise DomainError(f"{source}: expected a mapping with 'intents' and 'slots' at the top level")
    return _parse_domain(raw, where=str(source))


def _parse_domain(raw: dict[str, Any], where: str) -> Domain:
    slots = {name: _parse_slot(name, spec) for name, spec in _section(raw, "slots", where).items()}
    intents = {
        name: _parse_intent(name, spec, slots)
        for name, spec in _section(raw, "intents", where).items()
    }
    if not intents:
        raise DomainError(f"{where}: 'intents' is empty; define at least one intent")
    threshold = float(raw.get("handoff_sentiment", -0.6))
    if not -1.0 <= threshold <= 1.0:
        raise DomainError(f"{where}: handoff_sentiment {threshold} is outside VADER's range [-1, 1]")
    return Domain(
        name=str(raw.get("name", Path(where).stem)),
        intents=MappingProxyType(intents),
        slots=MappingProxyType(slots),
        fallback_response=_required_text(raw, "fallback_response", where),
        handoff_response=_required_text(raw, "handoff_response", where),
        handoff_sentiment=threshold,
    )


def _parse_slot(name: str, spec: Any) -> SlotSpec:
    if not isinstance(spec, dict):
        raise DomainError(f"slot '{name}': expected a mapping with 'type' and 'prompt'")
    slot_type = spec.get("type", name)  # a slot named "email" is an email unless told otherwise
    if slot_type not in SLOT_TYPES:
        raise DomainError(
            f"slot '{name}': unknown type '{slot_type}'; use one of {sorted(SLOT_TYPES)}"
        )
    values = _parse_values(name, spec.get("values") or {})
    if slot_type in CATEGORICAL_TYPES and not values:
        raise DomainError(f"slot '{name}': type '{slot_type}' needs a 'values' list of canonical values")
    if slot_type not in CATEGORICAL_TYPES and values:
        raise DomainError(f"slot '{name}': type '{slot_type}' is pattern-matched; remove its 'values'")
    return SlotSpec(
        name=name,
        type=slot_type,
        prompt=_required_text(spec, "prompt", f"slot '{name}'"),
        values=MappingProxyType(values),
        mentions=tuple(str(m).lower() for m in spec.get("mentions") or (name.replace("_", " "),)),
    )


def _parse_values(slot: str, raw: Any) -> dict[str, tuple[str, ...]]:
    """Accept `canonical: [synonyms]` or a bare list of canonical values."""
    if isinstance(raw, list):
        raw = {value: [] for value in raw}
    if not isinstance(raw, dict):
        raise DomainError(f"slot '{slot}': 'values' must map each canonical value to a list of synonyms")
    values = {}
    for canonical, synonyms in raw.items():
        spoken = str(canonical).replace("_", " ").lower()
        words = [spoken, *(str(s).lower() for s in synonyms or ())]
        values[str(canonical)] = tuple(dict.fromkeys(words))  # dedupe, keep order
    return values


def _parse_intent(name: str, spec: Any, slots: Mapping[str, SlotSpec]) -> IntentSpec:
    if not isinstance(spec, dict):
        raise DomainError(f"intent '{name}': expected a mapping with 'examples' and 'response'")
    examples = tuple(str(e) for e in spec.get("examples") or ())
    if not examples:
        raise DomainError(f"intent '{name}': no examples; add a few utterances that express it")
    required = tuple(spec.get("required_slots") or ())
    for slot in required:
        if slot not in slots:
            raise DomainError(
                f"intent '{name}': required slot '{slot}' is not defined; add it under 'slots' "
                f"(defined: {sorted(slots)})"
            )
    response = _required_text(spec, "response", f"intent '{name}'")
    _check_placeholders(name, response, required, slots)
    return IntentSpec(
        name=name,
        examples=examples,
        required_slots=required,
        response=response,
        keeps_active=bool(spec.get("keeps_active", False)),
    )


def _check_placeholders(
    intent: str, response: str, required: tuple[str, ...], slots: Mapping[str, SlotSpec]
) -> None:
    """Every {placeholder} must be a required slot, so formatting can never miss a key."""
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(response) if field is not None]
    except ValueError as exc:
        raise DomainError(f"intent '{intent}': response is not a valid template: {exc}") from exc
    for field in fields:
        if field not in slots:
            raise DomainError(
                f"intent '{intent}': response placeholder '{{{field}}}' names no slot; "
                f"use one of {sorted(slots)} or remove it"
            )
        if field not in required:
            raise DomainError(
                f"intent '{intent}': response uses '{{{field}}}' but '{field}' is not in "
                "required_slots, so it may be unfilled; add it to required_slots"
            )


def _section(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    section = raw.get(key)
    if not isinstance(section, dict):
        raise DomainError(f"{where}: '{key}' must be a mapping of name -> spec")
    return section


def _required_text(spec: dict[str, Any], key: str, where: str) -> str:
    text = spec.get(key)
    if not isinstance(text, str) or not text.strip():
        raise DomainError(f"{where}: '{key}' is missing or empty; give it a sentence of text")
    return text
