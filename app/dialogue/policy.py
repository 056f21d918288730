"""Policy: what the reply must say. The language model only phrases it.

A model of a few hundred million parameters is not a source of facts, so the
policy fixes the facts (slot values, webhook answers, knowledge-base entries,
what a photo showed) and the next question; `grounded` then checks that a
generated reply kept them and says nothing a customer must not read.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from string import Formatter

from app.dialogue.acceptance import objection
from app.dialogue.domain import Domain, SlotSpec
from app.dialogue.knowledge import ERROR_CODE_SLOT, NOTHING, Found, shown_facts
from app.dialogue.slots import extract_slots
from app.dialogue.state import DialogueState
from app.dialogue.tracker import TurnAnalysis

HANDOFF_WORDS = ("agent", "person", "human", "colleague", "team")
# A reply about a backend being down must still say so, in whatever words.
UNAVAILABLE_WORDS = ("can't reach", "cannot reach", "couldn't reach", "unavailable", "down", "try again", "retry")
REPEATS_ALLOWED = 2  # a word 4-gram said three times is a model stuck in a loop
LABEL_WORDS = 3  # the words before a value that name what it is ("your tracking number", "order")
# A reply to a decision that pins no fact (a greeting, an off-topic answer) must still say what the draft
# says: at least this share of the draft's content words, compared by their first STEM letters.
GIST_SHARE = 0.5
STEM = 5  # "contacting" and "contact", "thanks" and "thank" meet
FUNCTION_WORDS = frozenset(
    "about also been could from have into just more most only should some such than that then them there they "
    "this very were what when which will with would your".split()
)

# Slot types whose values a reply could get wrong in a way that matters.
CHECKED_TYPES = ("order_id", "email", "phone", "amount")

# Meta intents the policy answers itself. A domain words the replies in their `response` (ask_knowledge's is
# said when no entry answers the question); a domain without them gets these.
KNOWLEDGE_ACT = "ask_knowledge"
ANYTHING_ELSE = "Is there anything else I can help you with?"  # said once the task was answered
OFF_TOPIC_ACT = "off_topic"
UNKNOWN_QUESTION_RESPONSE = (
    "I don't know that one, I'm afraid. If you'd like, ask for a person and a member of our support team will "
    "answer it."
)
OFF_TOPIC_RESPONSE = (
    "That's outside what I know about: I'm a customer-service assistant, and I can help with your orders, "
    "deliveries, returns, refunds and products."
)
NOT_FIXED_ACT = "not_fixed"  # "I did that and it still says it": the advice did not help
NOT_FIXED_RESPONSE = "Sorry that didn't sort it out. Ask for a person and a member of our support team will help."


@dataclass(frozen=True)
class Decision:
    # "respond" | "ask_slot" | "recall" | "acknowledge" | "answer" (from the knowledge base) | "unknown_question"
    # | "off_topic" | "not_fixed" | "handoff" | "fallback" | "call_action" | "action_unavailable"
    action: str
    draft: str  # the policy's own wording: said as is when the model's reply is not grounded
    facts: dict[str, str] = field(default_factory=dict)  # what the reply may state
    required: tuple[str, ...] = ()  # strings the reply must contain
    names_one_of: tuple[str, ...] = ()  # the reply must contain at least one of these (the slot asked for...)
    requested_slot: str | None = None
    call: str | None = None  # an action to call first; then decide again with its result
    acted: bool = False  # a webhook answered in this turn: only then may the reply say something was done
    unknown: tuple[str, ...] = ()  # facts the customer asked for that no slot or webhook holds: said so first
    media: frozenset[str] = frozenset()  # what the customer has sent besides text ("image", "audio"): a reply may cite it


@dataclass(frozen=True)
class ActionResult:
    """What a webhook (an action or the handoff) answered, already validated; ok=False when it was down,
    refused, or answered something unusable. Slots go into the state; facts only into this turn's reply."""

    ok: bool
    slots: dict[str, str] = field(default_factory=dict)
    facts: dict[str, str] = field(default_factory=dict)


def decide(
    state: DialogueState, analysis: TurnAnalysis, domain: Domain, *, result: ActionResult | None = None,
    found: Found = NOTHING,
) -> Decision:
    """`result`: the answer to the action (or the handoff) the previous decision asked the caller to make;
    `found`: what the knowledge base has for this turn (app/dialogue/knowledge.py)."""
    decision = _confirm_corrections(_decide(state, analysis, domain, result=result, found=found), state, analysis)
    sent = {note.modality for note in state.evidence} | {source.modality for source in state.slot_sources.values()}
    return replace(decision, media=frozenset(sent & {"image", "audio"}))  # notes of old turns may have been dropped


def _confirm_corrections(decision: Decision, state: DialogueState, analysis: TurnAnalysis) -> Decision:
    """A value the user corrected is confirmed first, so they see which one now stands."""
    values = {name: spoken_value(state.slots[name]) for name in analysis.corrected if name in state.slots}
    if not values or decision.call is not None:  # a call is decided again with its answer
        return decision
    noted = " and ".join(f"your {_label(name)} is now {value}" for name, value in values.items())
    required = decision.required + tuple(v for v in values.values() if v not in decision.required)
    return replace(decision, draft=f"Got it: {noted}. {decision.draft}", required=required)


def _decide(
    state: DialogueState, analysis: TurnAnalysis, domain: Domain, *, result: ActionResult | None = None,
    found: Found = NOTHING,
) -> Decision:
    facts = dict(state.slots)
    acted = result is not None and result.ok
    if state.handed_off:
        if result is not None and not result.ok:
            return Decision("handoff", domain.handoff_failed_response, facts, names_one_of=HANDOFF_WORDS)
        draft = domain.handoff_response if analysis.handed_over else domain.handed_off_response
        return Decision("handoff", draft, facts, names_one_of=HANDOFF_WORDS, acted=acted)
    if analysis.act == "ask_recall":
        return _recall(state, analysis, domain)
    if (answer := _from_knowledge(state, analysis, domain, found)) is not None:
        return answer
    shown = shown_facts(state)
    # Small talk holds nothing open: "hi" then "order 4512" is a detail to note, not a second greeting.
    after_small_talk = state.intent is not None and domain.intents[state.intent].social and analysis.act != state.intent
    if (state.intent is None or after_small_talk) and (analysis.filled or shown):
        return _acknowledge(state, analysis, shown)
    if state.intent is None:
        return Decision("fallback", domain.fallback_response, facts)
    intent = domain.intents[state.intent]
    needed = {*intent.required_slots, *intent.states}
    missing = _missing(state, domain)
    if analysis.filled and needed.isdisjoint(analysis.filled) and not analysis.took_over and not analysis.corrected:
        # A detail the task does not need is noted; then the task's next question, or, when it was answered
        # last turn, not the answer said again.
        if not missing:
            return _acknowledge(state, analysis, shown, then=ANYTHING_ELSE)
        slot = domain.slots[missing[0]]
        return replace(_acknowledge(state, analysis, shown, then=slot.prompt), names_one_of=slot.mentions,
                       requested_slot=slot.name)
    if missing:
        slot = domain.slots[missing[0]]
        return _stating(shown, _ask(slot, slot.prompt, facts))
    if intent.action is not None and result is None:
        return Decision("call_action", domain.action_failed_response, facts, call=intent.action)
    if result is not None and not result.ok:  # a webhook, or a client's tool (app/dialogue/tools.py), failed
        return Decision("action_unavailable", domain.action_failed_response, facts, names_one_of=UNAVAILABLE_WORDS)
    used = {name: spoken_value(state.slots[name]) for name in _placeholders(intent.response)}
    draft = intent.response.format(**used)
    told = dict(result.facts) if result is not None else {}
    known = {name: spoken_value(state.slots[name]) for name in intent.states if name in state.slots}
    stated = known | told  # what the state holds that the response states, then a webhook's fresh answer
    unsaid = {name: value for name, value in stated.items() if _squash(value) not in _squash(draft)}
    if unsaid:  # the template did not word them: the draft states them plainly, so it is grounded itself
        draft += " " + " ".join(f"{_label(name).capitalize()}: {value}." for name, value in unsaid.items())
    # Only a follow-up question that brings nothing new asks for such a detail: "where's my delivery? order 4512"
    # names the delivery but asks for the order's status.
    follow_up = not analysis.took_over and not analysis.filled
    unknown = tuple(name for name in analysis.asked_slots if follow_up and name in intent.states and name not in stated)
    named = tuple(map(_label, unknown))  # required: a reply must name what it cannot see, not another detail
    if unknown:  # "what's the tracking number?" and nobody knows it: said plainly, not the same answer again
        draft = f"I can't see the {' or the '.join(named)} from here, I'm afraid. {draft}"
    # A response that tells the customer to ask for a person keeps that offer: it is their next step.
    offer = HANDOFF_WORDS if _names_any(draft, HANDOFF_WORDS) else ()
    respond = Decision("respond", draft, facts | told, required=tuple(used.values()) + tuple(stated.values()) + named,
                       names_one_of=offer, acted=acted, unknown=unknown)
    return _stating(shown, respond)


def _acknowledge(state: DialogueState, analysis: TurnAnalysis, shown: dict[str, str], *,
                 then: str = "How can I help you with it?") -> Decision:
    """Details arrived (say, on a photo) before the user said what they need, or after the task was done."""
    values = {name: spoken_value(state.slots[name]) for name in analysis.filled}
    noted = " and ".join(f"your {_label(name)} {value}" for name, value in values.items())
    draft = f"Thanks, I've noted {noted}." if values else "Thanks for the photo."
    acknowledged = Decision("acknowledge", draft, dict(state.slots), required=tuple(values.values()))
    shown_too = _stating(shown, acknowledged)
    return replace(shown_too, draft=f"{shown_too.draft} {then}")


def _from_knowledge(state: DialogueState, analysis: TurnAnalysis, domain: Domain, found: Found) -> Decision | None:
    """A question the knowledge base answers, one it cannot, or one Parley is not here for; None for the rest.

    A code this turn brought (typed, or on a photo of a screen) is answered whatever the intent; otherwise
    the entry answers a knowledge question, or any turn it fits better than the best intent does
    ("how long do refunds take?" is about refunds, but asks no refund)."""
    if found.entry is not None and found.code is not None and found.current:
        return _answer(state, domain, found)
    if found.unknown_code is not None:  # named this turn, known to no entry: said so, whatever the intent
        return _not_known(state, domain, found)
    if found.code_untold and ERROR_CODE_SLOT in domain.slots:  # "my printer shows an error": which one?
        slot = domain.slots[ERROR_CODE_SLOT]
        return _ask(slot, slot.prompt, dict(state.slots))
    if analysis.act == OFF_TOPIC_ACT:
        said = _meta_response(domain, OFF_TOPIC_ACT, OFF_TOPIC_RESPONSE)
        return _then_ask(state, domain, Decision("off_topic", said, dict(state.slots)))
    if analysis.act == NOT_FIXED_ACT and state.intent is not None:  # with no task, there was no advice to fail
        said = _meta_response(domain, NOT_FIXED_ACT, NOT_FIXED_RESPONSE)
        return Decision("not_fixed", said, dict(state.slots), names_one_of=HANDOFF_WORDS)
    asked = analysis.act == KNOWLEDGE_ACT
    # A turn that gives its task's details asks for that task: "where's my parcel? order 7731" is an order's
    # status, not the knowledge base's "parcel marked delivered but not here".
    task = domain.intents.get(analysis.act) if analysis.act is not None else None
    gives_details = task is not None and not set(analysis.filled).isdisjoint(task.required_slots)
    if found.entry is not None and (asked or (found.score > analysis.act_score and not gives_details)):
        # The answer outranked this turn's act: a task that act only now made active was not asked for
        # ("which payment methods do you accept?" is no billing case), so its slots are not asked for either.
        started = not (analysis.took_over and analysis.act == state.intent)
        return _answer(state, domain, found, then_ask=started)
    return _not_known(state, domain, found) if asked else None


def _not_known(state: DialogueState, domain: Domain, found: Found) -> Decision:
    """A question no entry answers: a plain "I don't know that one" and the offer of a person."""
    said = _meta_response(domain, KNOWLEDGE_ACT, UNKNOWN_QUESTION_RESPONSE)
    facts = dict(state.slots)
    required: tuple[str, ...] = ()
    if found.unknown_code is not None:  # named, so the customer sees which code was looked up
        said = f"{found.unknown_code} isn't in my notes. {said}"
        facts["code"] = found.unknown_code
        required = (found.unknown_code,)
    return _then_ask(state, domain, Decision("unknown_question", said, facts, required=required,
                                             names_one_of=HANDOFF_WORDS))


def _answer(state: DialogueState, domain: Domain, found: Found, *, then_ask: bool = True) -> Decision:
    """The entry's answer as written, required word for word: a rewording could change a fix or a figure."""
    assert found.entry is not None
    answer = found.entry.answer
    lead = f"The photo shows error {found.code}. " if found.code and found.seen_in == "image" else ""
    facts = dict(state.slots) | {"answer": answer} | ({"code": found.code} if found.code else {})
    decision = Decision("answer", lead + answer, facts, required=(answer,))
    return _then_ask(state, domain, decision) if then_ask else decision


def _then_ask(state: DialogueState, domain: Domain, decision: Decision) -> Decision:
    """After an aside, the task in progress goes on: ask for the slot it still needs."""
    missing = _missing(state, domain)
    if not missing:
        return decision
    slot = domain.slots[missing[0]]
    return replace(decision, draft=f"{decision.draft} {slot.prompt}", requested_slot=slot.name)


def _ask(slot: SlotSpec, draft: str, facts: dict[str, str]) -> Decision:
    """A question for `slot`: the reply must name it and ask."""
    return Decision("ask_slot", draft, facts, names_one_of=slot.mentions, requested_slot=slot.name)


def _stating(shown: dict[str, str], decision: Decision) -> Decision:
    """`decision` with what this turn's photo showed and no slot holds ("it is expected Friday") said too."""
    parts = [f"{label} {shown[key]}" for key, label in (("expected", "it is expected"), ("carrier", "the carrier is"))
             if key in shown and _squash(shown[key]) not in _squash(decision.draft)]
    if not parts:
        return decision
    sentence = "The photo shows " + " and ".join(parts) + "."
    draft = f"{sentence} {decision.draft}" if decision.action == "ask_slot" else f"{decision.draft} {sentence}"
    return replace(decision, draft=draft, facts=decision.facts | shown, required=decision.required + tuple(shown.values()))


def _missing(state: DialogueState, domain: Domain) -> list[str]:
    """Required slots of the active task intent that are still empty."""
    if state.intent is None:
        return []
    return [name for name in domain.intents[state.intent].required_slots if name not in state.slots]


def _meta_response(domain: Domain, intent: str, default: str) -> str:
    return domain.intents[intent].response if intent in domain.intents else default


def _recall(state: DialogueState, analysis: TurnAnalysis, domain: Domain) -> Decision:
    asked = analysis.asked_slots or tuple(state.slots)
    known = [name for name in asked if name in state.slots]
    if not known:
        slot = domain.slots[asked[0]] if asked else None
        if slot is None:
            return Decision("recall", "I don't have any details from you yet. How can I help?", {})
        draft = f"I don't have your {_label(slot.name)} yet. {slot.prompt}"
        return _ask(slot, draft, {})
    values = {name: spoken_value(state.slots[name]) for name in known}
    sentence = " and ".join(f"your {_label(name)} is {value}" for name, value in values.items())
    draft = sentence[0].upper() + sentence[1:] + "."
    return Decision("recall", draft, dict(state.slots), required=tuple(values.values()))


def grounded(reply: str, decision: Decision, domain: Domain) -> bool:
    """True when the reply is plain text that states every required fact, names the slot it
    asks for, states no checked value the state lacks, and has nothing a customer must not read
    (app/dialogue/acceptance.py: an action claimed that did not run, a refusal, a condolence...)."""
    text = _squash(reply)
    if not _plain_text(text) or _repetitive(text) or any(_squash(fact) not in text for fact in decision.required):
        return False
    if _mislabels_a_fact(text, decision, domain) or _claims_a_change(text, decision):
        return False
    if objection(reply, acted=decision.acted, media=decision.media) is not None:
        return False
    # A reply keeps the draft's gist: the facts alone are not what the policy decided to say. Only a slot
    # question (it must name the slot and ask) and a handoff (it must name a person) may reword it all.
    # Caught so: "I don't know that one... ask for a person" written as a joke about "a person who is afraid
    # of something"; a correction to order 4513 answered "Sorry, I gave you the wrong number. The correct
    # number is 4513." (the customer's words, as if the assistant had erred); an order's answer as "ZT-3309"
    # or "The speaker is the speaker.".
    free = decision.requested_slot is not None or decision.action == "handoff"
    if not free and not _keeps_gist(text, _squash(decision.draft)):
        return False
    if decision.names_one_of and not any(_squash(m) in text for m in decision.names_one_of):
        return False
    if decision.requested_slot and "?" not in reply:  # naming the slot is not enough: it must be asked for
        return False
    return not _invents_values(reply, decision, domain)


def already_failed(prefix: str, decision: Decision, domain: Domain) -> bool:
    """True when a reply that starts with `prefix` fails `grounded` whatever follows, so its decoding can stop.

    Only the checks that more text cannot undo, on the prefix's finished words: a phrase a customer must
    not read, a repeated 4-gram, and (on finished sentences, where a number or an address is complete)
    a checked value the facts do not hold."""
    words = re.sub(r"\S+$", "", prefix)  # a word still being written may yet become another
    if objection(words, acted=decision.acted, media=decision.media) is not None or _repetitive(_squash(words)):
        return True
    sentences = words[:max(words.rfind(end) for end in (". ", "! ", "? ", "\n")) + 1]
    return _invents_values(sentences, decision, domain)


def _mislabels_a_fact(text: str, decision: Decision, domain: Domain) -> bool:
    """A fact's value right after another slot's name and not its own: "your tracking number 1Z999... and your
    expected day 1Z999...", written by a fused model that had no expected day to state (its placeholder was
    banned, and the next likeliest one took its place); or the same words before it twice ("your order number
    5520 and your order number 5520")."""
    for name, value in decision.facts.items():
        if name not in domain.slots or not (value := _squash(value)):
            continue
        own = domain.slots[name].mentions
        others = tuple(m for other, spec in domain.slots.items() if other != name for m in spec.mentions)
        said: set[str] = set()
        for at in (m.start() for m in re.finditer(re.escape(value), text)):
            before = " ".join(_words(text[:at])[-LABEL_WORDS:])
            if (_names_any(before, others) and not _names_any(before, own)) or before in said:
                return True
            said.add(before)
    return False


def _claims_a_change(text: str, decision: Decision) -> bool:
    """A value said to be new ("your tracking number is now 1Z999...") where the draft says no such change: the
    customer corrected another slot."""
    draft = _squash(decision.draft)
    return any(f"now {value}" in text and f"now {value}" not in draft
               for value in map(_squash, decision.facts.values()) if value)


def _invents_values(text: str, decision: Decision, domain: Domain) -> bool:
    """A checked value (order id, email, phone, amount) in `text` that the facts do not hold."""
    rest = text
    for value in decision.facts.values():  # blank out the known values; any checked value still found was invented
        rest = re.sub(re.escape(value), " ", rest, flags=re.IGNORECASE)
    checked = {name: spec for name, spec in domain.slots.items() if spec.type in CHECKED_TYPES}
    return bool(extract_slots(rest, checked))


def _names_any(text: str, words: tuple[str, ...]) -> bool:
    return any(re.search(rf"\b{re.escape(word)}\b", text, re.I) for word in words)


def _plain_text(text: str) -> bool:
    """Readable prose: mostly letters, digits, spaces and punctuation, no control characters."""
    if not text or any(not ch.isprintable() for ch in text):
        return False
    ordinary = sum(ch.isascii() or ch.isalpha() for ch in text)
    return ordinary / len(text) >= 0.9


def _keeps_gist(text: str, draft: str) -> bool:
    """Most of the draft's content words are in the reply (the model did not write about something else)."""
    wanted = _stems(draft)
    return not wanted or len(wanted & _stems(text)) >= GIST_SHARE * len(wanted)


def _stems(text: str) -> set[str]:
    return {word[:STEM] for word in re.findall(r"[a-z]+", text) if len(word) >= 4 and word not in FUNCTION_WORDS}


def _repetitive(text: str) -> bool:
    """A model stuck in a loop (`text` squashed): a word 4-gram said over and over, or a finished sentence of 4+
    words said again."""
    words = _words(text)
    grams = Counter(tuple(words[i : i + 4]) for i in range(len(words) - 3))
    sentences = Counter(" ".join(_words(s)) for s in re.findall(r"[^.!?\n]+[.!?]", text))
    return any(count > REPEATS_ALLOWED for count in grams.values()) or \
        any(count > 1 and len(sentence.split()) >= 4 for sentence, count in sentences.items())


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'-]+", text)


def _placeholders(template: str) -> list[str]:
    return [name for _, name, _, _ in Formatter().parse(template) if name]


VOCABULARY_VALUE = re.compile(r"[a-z]+(?:_[a-z]+)+")  # the domain's own names: coffee_maker, charged_twice


def spoken_value(value: str) -> str:
    """Slot values as a person writes them: the domain's coffee_maker is a coffee maker; what the customer
    typed (jo_smith@example.org) stays as typed."""
    return value.replace("_", " ") if VOCABULARY_VALUE.fullmatch(value) else value


def _label(slot_name: str) -> str:
    return slot_name.replace("_id", " number").replace("_", " ")


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()
