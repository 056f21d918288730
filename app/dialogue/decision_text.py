"""The policy's decision as the reply model reads it, and the values its reply's placeholders are filled from.

The reply model (models/fused.py) writes delexicalised replies: "Thanks, I have order [order_id]." It sees
fact NAMES, never values, so it cannot misspell an order number; `fill` puts the decision's exact values in
afterwards, and `missing` says which required facts a reply left out (the pipeline then sends the policy's
own wording). The same text conditions the model in training (app/dialogue/dataset.py) and in serving.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from app.dialogue.domain import Domain
from app.dialogue.policy import Decision, spoken_value
from app.dialogue.state import DialogueState

PLACEHOLDER = re.compile(r"\[([a-z][a-z0-9_]*)\]")
SPOKEN_MODALITIES = ("image", "audio")  # a fact read off a photo or heard in a voice clip is said to be so
# Facts the policy reads off this turn's photo without putting them in a slot (knowledge.shown_facts).
SHOWN_ON_PHOTO = ("expected", "carrier")


@dataclass(frozen=True)
class DecisionText:
    text: str  # "act=respond intent=order_status ask=none user=inform ... say: order_id product know: email ..."
    values: dict[str, str] = field(default_factory=dict)  # placeholder name -> what the reply says in its place
    required: tuple[str, ...] = ()  # placeholder names the reply must contain
    sources: dict[str, str] = field(default_factory=dict)  # fact name -> "image" | "audio" it came on this turn


def act_name(decision: Decision, domain: Domain) -> str:
    """The act a reply is written for: the decision's action, with the handoff told apart by its moment
    (the turn it happens, a later turn, or the handoff webhook failing)."""
    if decision.action != "handoff":
        return decision.action
    if decision.draft == domain.handoff_failed_response:
        return "handoff_failed"
    return "handed_off" if decision.draft == domain.handed_off_response else "handoff"


def describe(
    decision: Decision, state: DialogueState, domain: Domain, *, corrected: tuple[str, ...] = ()
) -> DecisionText:
    """`decision` (made on `state`) as conditioning text; `corrected`: the slots this turn corrected
    (TurnAnalysis.corrected), which the reply confirms first."""
    facts = decision.facts | {name: state.slots[name] for name in corrected if name in state.slots}
    values = {name: spoken_value(value) for name, value in facts.items()}
    required = _required_names(decision, values)
    known = [name for name in values if name not in required]
    sources = {name: source for name in values if (source := _source(name, state)) is not None}
    fields = {
        "act": act_name(decision, domain),
        "intent": state.intent or "none",
        "ask": decision.requested_slot or "none",
        "user": state.last_act or "none",  # what the customer's turn did (ask_recall, inform, an intent)
        "acted": "yes" if decision.acted else "no",
        "sentiment": state.sentiment or "neutral",
        "handoff": "yes" if state.handed_off else "no",
    }
    parts = [" ".join(f"{key}={value}" for key, value in fields.items())]
    parts += [f"{label}: {' '.join(names)}" for label, names in
              (("corrected", [n for n in corrected if n in values]), ("unknown", list(decision.unknown)),
               ("say", list(required)), ("know", known),
               ("evidence", [f"{name}={source}" for name, source in sources.items()])) if names]
    return DecisionText(" ".join(parts), values, required, sources)


def acted_in(text: str) -> bool:
    """Whether a decision's text (`describe`) says this turn's action ran, so its reply may say it was done."""
    return "acted=yes" in text.split()


def fill(reply: str, values: dict[str, str]) -> str | None:
    """`reply` with each [placeholder] replaced by its value; None when it names one `values` lacks (the
    model invented a fact, so the policy's wording is sent instead)."""
    if any(name not in values for name in PLACEHOLDER.findall(reply)):
        return None
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], reply)


def missing(reply: str, required: tuple[str, ...] | list[str]) -> list[str]:
    """The required placeholders `reply` leaves out, in order."""
    used = set(PLACEHOLDER.findall(reply))
    return [name for name in required if name not in used]


def delexicalise(text: str, values: dict[str, str]) -> str:
    """`text` with each value written as its [placeholder] (longest values first, so "A7Q-4412" is not
    cut by a shorter value inside it): the policy's own wording as a training target."""
    for name, value in sorted(values.items(), key=lambda item: -len(item[1])):
        if value:
            text = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", f"[{name}]", text, flags=re.IGNORECASE)
    return text


def placeholders(reply: str) -> list[str]:
    """The placeholder names `reply` uses, in order of first use."""
    return list(dict.fromkeys(PLACEHOLDER.findall(reply)))


def _required_names(decision: Decision, values: dict[str, str]) -> tuple[str, ...]:
    """The decision's required strings, each named by the first fact that says it."""
    by_value: dict[str, str] = {}
    for name, value in values.items():
        by_value.setdefault(_squash(value), name)
    names = [by_value[key] for text in decision.required if (key := _squash(text)) in by_value]
    return tuple(dict.fromkeys(names))


def _source(name: str, state: DialogueState) -> str | None:
    """Where fact `name` came from, when this turn's photo or voice clip brought it (a reply says so then)."""
    if name in SHOWN_ON_PHOTO:
        return "image"
    source = state.slot_sources.get(name)
    if source is None or source.turn != state.turns or source.modality not in SPOKEN_MODALITIES:
        return None
    return source.modality


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()
