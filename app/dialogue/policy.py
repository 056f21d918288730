"""Policy: what the reply must say. The language model only phrases it.

A model of a few hundred million parameters is not a source of facts, so the
policy fixes the facts and the next question; `grounded` then checks that a
generated reply kept them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from string import Formatter

from app.dialogue.domain import Domain
from app.dialogue.slots import extract_slots
from app.dialogue.state import DialogueState
from app.dialogue.tracker import TurnAnalysis

# Slot types whose values a reply could get wrong in a way that matters.
CHECKED_TYPES = ("order_id", "email", "phone", "amount")


@dataclass(frozen=True)
class Decision:
    action: str  # "respond" | "ask_slot" | "recall" | "handoff" | "fallback"
    draft: str  # the policy's own wording: said as is when the model's reply is not grounded
    facts: dict[str, str] = field(default_factory=dict)  # what the reply may state
    required: tuple[str, ...] = ()  # strings the reply must contain
    asks: tuple[str, ...] = ()  # when asking for a slot: the reply must name it in one of these ways
    requested_slot: str | None = None


def decide(state: DialogueState, analysis: TurnAnalysis, domain: Domain) -> Decision:
    facts = dict(state.slots)
    if state.handed_off:
        return Decision("handoff", domain.handoff_response, facts)
    if analysis.act == "ask_recall":
        return _recall(state, analysis, domain)
    if state.intent is None:
        return Decision("fallback", domain.fallback_response, facts)
    intent = domain.intents[state.intent]
    missing = [name for name in intent.required_slots if name not in state.slots]
    if missing:
        slot = domain.slots[missing[0]]
        return Decision("ask_slot", slot.prompt, facts, asks=slot.mentions, requested_slot=slot.name)
    used = _placeholders(intent.response)
    draft = intent.response.format(**{name: state.slots[name] for name in used})
    return Decision("respond", draft, facts, required=tuple(state.slots[name] for name in used))


def _recall(state: DialogueState, analysis: TurnAnalysis, domain: Domain) -> Decision:
    asked = analysis.asked_slots or tuple(state.slots)
    known = [name for name in asked if name in state.slots]
    if not known:
        slot = domain.slots[asked[0]] if asked else None
        if slot is None:
            return Decision("recall", "I don't have any details from you yet. How can I help?", {})
        draft = f"I don't have your {_label(slot.name)} yet. {slot.prompt}"
        return Decision("ask_slot", draft, {}, asks=slot.mentions, requested_slot=slot.name)
    parts = [f"your {_label(name)} is {state.slots[name]}" for name in known]
    draft = "I have " + " and ".join(parts) + "."
    return Decision("recall", draft, dict(state.slots), required=tuple(state.slots[name] for name in known))


def grounded(reply: str, decision: Decision, domain: Domain) -> bool:
    """True when the reply is plain text that states every required fact, names the slot it
    asks for, and states no checked value the state lacks."""
    text = _squash(reply)
    if not _plain_text(text) or any(_squash(fact) not in text for fact in decision.required):
        return False
    if decision.asks and not any(_squash(m) in text for m in decision.asks):
        return False
    known = {_squash(value) for value in decision.facts.values()}
    checked = {name: spec for name, spec in domain.slots.items() if spec.type in CHECKED_TYPES}
    stated = extract_slots(reply, checked)
    return all(_squash(slot.value) in known for slot in stated.values())


def _plain_text(text: str) -> bool:
    """Readable prose: mostly letters, digits, spaces and punctuation, no control characters."""
    if not text or any(not ch.isprintable() for ch in text):
        return False
    ordinary = sum(ch.isascii() or ch.isalpha() for ch in text)
    return ordinary / len(text) >= 0.9


def _placeholders(template: str) -> list[str]:
    return [name for _, name, _, _ in Formatter().parse(template) if name]


def _label(slot_name: str) -> str:
    return slot_name.replace("_id", " number").replace("_", " ")


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()
