"""Policy: what the reply must say. The language model only phrases it.

A model of a few hundred million parameters is not a source of facts, so the
policy fixes the facts and the next question; `grounded` then checks that a
generated reply kept them.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from string import Formatter

from app.dialogue.domain import Domain
from app.dialogue.slots import extract_slots
from app.dialogue.state import DialogueState
from app.dialogue.tracker import TurnAnalysis

HANDOFF_WORDS = ("agent", "person", "human", "colleague", "team")
# A reply about a backend being down must still say so, in whatever words.
UNAVAILABLE_WORDS = ("can't reach", "cannot reach", "couldn't reach", "unavailable", "down", "try again", "retry")
REPEATS_ALLOWED = 2  # a word 4-gram said three times is a model stuck in a loop

# Slot types whose values a reply could get wrong in a way that matters.
CHECKED_TYPES = ("order_id", "email", "phone", "amount")


@dataclass(frozen=True)
class Decision:
    action: str  # "respond" | "ask_slot" | "recall" | "acknowledge" | "handoff" | "fallback"
    draft: str  # the policy's own wording: said as is when the model's reply is not grounded
    facts: dict[str, str] = field(default_factory=dict)  # what the reply may state
    required: tuple[str, ...] = ()  # strings the reply must contain
    names_one_of: tuple[str, ...] = ()  # the reply must contain at least one of these (the slot asked for...)
    requested_slot: str | None = None
    call: str | None = None  # an action to call first; then decide again with its result


@dataclass(frozen=True)
class ActionResult:
    """What a webhook (an action or the handoff) answered, already validated; ok=False when it was down,
    refused, or answered something unusable. Slots go into the state; facts only into this turn's reply."""

    ok: bool
    slots: dict[str, str] = field(default_factory=dict)
    facts: dict[str, str] = field(default_factory=dict)


def decide(
    state: DialogueState, analysis: TurnAnalysis, domain: Domain, *, result: ActionResult | None = None
) -> Decision:
    return _confirm_corrections(_decide(state, analysis, domain, result=result), state, analysis)


def _confirm_corrections(decision: Decision, state: DialogueState, analysis: TurnAnalysis) -> Decision:
    """A value the user corrected is confirmed first, so they see which one now stands."""
    values = {name: _spoken(state.slots[name]) for name in analysis.corrected if name in state.slots}
    if not values or decision.call is not None:  # a call is decided again with its answer
        return decision
    noted = " and ".join(f"your {_label(name)} is now {value}" for name, value in values.items())
    required = decision.required + tuple(v for v in values.values() if v not in decision.required)
    return replace(decision, draft=f"Got it: {noted}. {decision.draft}", required=required)


def _decide(
    state: DialogueState, analysis: TurnAnalysis, domain: Domain, *, result: ActionResult | None = None
) -> Decision:
    """`result`: the answer to the action (or the handoff) the previous decision asked the caller to make."""
    facts = dict(state.slots)
    if state.handed_off:
        if result is not None and not result.ok:
            return Decision("handoff", domain.handoff_failed_response, facts, names_one_of=HANDOFF_WORDS)
        draft = domain.handoff_response if analysis.handed_over else domain.handed_off_response
        return Decision("handoff", draft, facts, names_one_of=HANDOFF_WORDS)
    if analysis.act == "ask_recall":
        return _recall(state, analysis, domain)
    if state.intent is None:
        if analysis.filled:
            return _acknowledge(state, analysis)
        return Decision("fallback", domain.fallback_response, facts)
    intent = domain.intents[state.intent]
    missing = [name for name in intent.required_slots if name not in state.slots]
    if missing:
        slot = domain.slots[missing[0]]
        return Decision("ask_slot", slot.prompt, facts, names_one_of=slot.mentions, requested_slot=slot.name)
    if intent.action is not None:
        if result is None:
            return Decision("call_action", domain.action_failed_response, facts, call=intent.action)
        if not result.ok:
            return Decision("action_unavailable", domain.action_failed_response, facts, names_one_of=UNAVAILABLE_WORDS)
    used = {name: _spoken(state.slots[name]) for name in _placeholders(intent.response)}
    draft = intent.response.format(**used)
    told = dict(result.facts) if result is not None else {}
    unsaid = {name: value for name, value in told.items() if _squash(value) not in _squash(draft)}
    if unsaid:  # the template did not word them: the draft states them plainly, so it is grounded itself
        draft += " " + " ".join(f"{_label(name).capitalize()}: {value}." for name, value in unsaid.items())
    return Decision("respond", draft, facts | told, required=tuple(used.values()) + tuple(told.values()))


def _acknowledge(state: DialogueState, analysis: TurnAnalysis) -> Decision:
    """Details arrived (say, on a photo) before the user said what they need."""
    values = {name: _spoken(state.slots[name]) for name in analysis.filled}
    noted = " and ".join(f"your {_label(name)} {value}" for name, value in values.items())
    draft = f"Thanks, I've noted {noted}. How can I help you with it?"
    return Decision("acknowledge", draft, dict(state.slots), required=tuple(values.values()))


def _recall(state: DialogueState, analysis: TurnAnalysis, domain: Domain) -> Decision:
    asked = analysis.asked_slots or tuple(state.slots)
    known = [name for name in asked if name in state.slots]
    if not known:
        slot = domain.slots[asked[0]] if asked else None
        if slot is None:
            return Decision("recall", "I don't have any details from you yet. How can I help?", {})
        draft = f"I don't have your {_label(slot.name)} yet. {slot.prompt}"
        return Decision("ask_slot", draft, {}, names_one_of=slot.mentions, requested_slot=slot.name)
    values = {name: _spoken(state.slots[name]) for name in known}
    sentence = " and ".join(f"your {_label(name)} is {value}" for name, value in values.items())
    draft = sentence[0].upper() + sentence[1:] + "."
    return Decision("recall", draft, dict(state.slots), required=tuple(values.values()))


def grounded(reply: str, decision: Decision, domain: Domain) -> bool:
    """True when the reply is plain text that states every required fact, names the slot it
    asks for, and states no checked value the state lacks."""
    text = _squash(reply)
    if not _plain_text(text) or _repetitive(text) or any(_squash(fact) not in text for fact in decision.required):
        return False
    if decision.names_one_of and not any(_squash(m) in text for m in decision.names_one_of):
        return False
    # Blank out the known values; any checked value still found was invented.
    rest = reply
    for value in decision.facts.values():
        rest = re.sub(re.escape(value), " ", rest, flags=re.IGNORECASE)
    checked = {name: spec for name, spec in domain.slots.items() if spec.type in CHECKED_TYPES}
    return not extract_slots(rest, checked)


def _plain_text(text: str) -> bool:
    """Readable prose: mostly letters, digits, spaces and punctuation, no control characters."""
    if not text or any(not ch.isprintable() for ch in text):
        return False
    ordinary = sum(ch.isascii() or ch.isalpha() for ch in text)
    return ordinary / len(text) >= 0.9


def _repetitive(text: str) -> bool:
    words = re.findall(r"[\w'-]+", text)
    grams = Counter(tuple(words[i : i + 4]) for i in range(len(words) - 3))
    return any(count > REPEATS_ALLOWED for count in grams.values())


def _placeholders(template: str) -> list[str]:
    return [name for _, name, _, _ in Formatter().parse(template) if name]


def _spoken(value: str) -> str:
    """Slot values as a person writes them: the domain's coffee_maker is a coffee maker."""
    return value.replace("_", " ")


def _label(slot_name: str) -> str:
    return slot_name.replace("_id", " number").replace("_", " ")


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()
