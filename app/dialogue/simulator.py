"""A user simulator: customers with goals talk to the real tracker and policy, turn by turn.

`Engine.understand` runs a turn the way app/pipeline.py does (tracker, evidence notes, knowledge base,
policy), from the text the turn carried: what was typed, what a voice clip says, what a photo shows. The
simulator knows what it rendered, so no OCR or speech recognition runs here. `Customer` says the turns:
a goal (an intent and its details) becomes a plan of steps (greet, state the task, asides, a correction, a
switch to another task, asking for a person, goodbye), worded from the paraphrase sets kept beside the
domain (<domain>.paraphrases.yaml), with typos, spoken forms of ids and emails, angry and polite moods.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from app.dialogue.domain import DEFAULT_DOMAIN_PATH, Domain, load_domain
from app.dialogue.knowledge import (
    NOTHING, Found, KnowledgeBase, held_error_code, knowledge_path, load_knowledge, passages,
)
from app.dialogue.policy import ActionResult, Decision, decide
from app.dialogue.sentiment import SentimentAnalyzer
from app.dialogue.state import DialogueState, EvidenceNote
from app.dialogue.tracker import HANDOFF_INTENT, DialogueTracker, Evidence, IntentClassifier, TurnAnalysis, record_action
from app.dialogue.user_values import CARRIERS, DAYS, UNKNOWN_CODES, ValuePool, spoken, typo
from app.stories.format import AudioSpec, ImageSpec
from models.registry import default_text_model, resolve_placement
from models.text import TextEncoder

EVIDENCE_KEPT = 6  # as app/pipeline.py keeps
RESERVE_ONE_IN = 8  # a phrasing whose hash falls in 1 of 8 buckets is said only in held-out dialogues
PHOTO_SLOTS = ("order_id", "tracking_number", "error_code", "amount")  # details a photo of a document carries
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbcwmd")
OCR_CONFIDENCE = 0.95
ASR_CONFIDENCE = 0.9
# Task switches only held-out dialogues make (from, to): a held-out flow.
HELDOUT_SWITCHES = frozenset({("return_item", "refund_request"), ("order_status", "damaged_item"),
                              ("billing", "technical_support")})
# The paraphrase list each plain step is worded from.
STEP_PHRASES = {"bye": "goodbyes", "knowledge": "knowledge", "unknown_question": "unknown_questions",
                "off_topic": "off_topic", "recall": "recall", "handoff": "handoff", "angry_handoff": "angry_handoff",
                "follow_up": "follow_ups"}
FOLLOW_UP_SHARE = 0.35  # of order-status customers who then ask for the tracking number or the delivery day
# Steps a customer may take after stating the task; "volunteer" offers a detail the task does not need
# ("my phone is 4155550100, by the way"), which the assistant acknowledges and can recall later.
ASIDES = ("knowledge", "error_question", "unknown_question", "off_topic", "recall", "volunteer")
CORRECTED = PHOTO_SLOTS + ("email", "phone", "product")  # details a customer corrects ("I meant the kettle")
VOLUNTEERED = ("phone", "amount", "email", "order_id", "product", "tracking_number")
TOOL_FACTS: dict[str, dict[str, tuple[str, ...]]] = {  # what a client's tool answers, per intent with a `tool` (app/dialogue/tools.py)
    "order_status": {"status": ("shipped", "out for delivery", "in transit", "delayed at the depot")},
    "return_item": {"return_window": ("open until the 30th", "open for 12 more days")},
    "refund_request": {"refund_status": ("approved", "pending review", "paid out")},
}
Embed = Callable[[list[str]], Sequence[np.ndarray]]


@dataclass(frozen=True)
class UserTurn:
    """One simulated turn: the words typed, a voice clip's transcript, what each photo shows."""

    text: str = ""
    heard: str = ""
    read: tuple[str, ...] = ()
    photos: tuple[ImageSpec, ...] = ()
    voice: AudioSpec | None = None
    step: str = "inform"  # what the customer meant to do (plan step)

    @property
    def words(self) -> str:
        """The customer's words this turn (the transcript for a voice turn)."""
        return " ".join(part for part in (self.text, self.heard) if part)


@dataclass(frozen=True)
class Understood:
    state: DialogueState
    analysis: TurnAnalysis
    decision: Decision
    found: Found


class Engine:
    """The server's understanding of one turn: the same tracker, knowledge base and policy."""

    def __init__(self, domain: Domain, tracker: DialogueTracker, knowledge: KnowledgeBase | None, embed: Embed) -> None:
        self.domain = domain
        self.tracker = tracker
        self.knowledge = knowledge
        self._embed = embed
        self._vectors: dict[str, np.ndarray] = {}  # simulated customers repeat themselves: embed once

    def texts_for(self, turn: UserTurn) -> list[str]:
        """What `understand` embeds for `turn` (the utterance and its clauses)."""
        return self.tracker.texts_to_embed(turn.words)

    def prefetch(self, texts: list[str]) -> None:
        """Embed `texts` in one batch now (many dialogues' turns at once), for `understand` to find."""
        new = [text for text in dict.fromkeys(texts) if text not in self._vectors]
        if new:
            self._vectors.update(zip(new, self._embed(new), strict=True))

    def understand(self, previous: DialogueState, turn: UserTurn) -> Understood:
        utterance = turn.words
        texts = self.texts_for(turn)
        self.prefetch(texts)
        vectors = [self._vectors[text] for text in texts]
        evidence = ([Evidence(turn.text, "text")] if turn.text else [])
        evidence += [Evidence(turn.heard, "audio", ASR_CONFIDENCE)] if turn.heard else []
        evidence += [Evidence(text, "image", OCR_CONFIDENCE) for text in turn.read]
        tracked = self.tracker.turn_input(tuple(evidence), utterance, vectors)
        state, analysis = self.tracker.update(previous, tracked)
        notes = [EvidenceNote(turn=state.turns, modality=e.modality, text=" ".join(e.text.split()))
                 for e in evidence if e.modality != "text"]
        state.evidence = (previous.evidence + notes)[-EVIDENCE_KEPT:]
        found = (self.knowledge.lookup(utterance, tracked.embedding, passages(utterance, state),
                                       held_code=held_error_code(state)) if self.knowledge else NOTHING)
        decision = decide(state, analysis, self.domain, found=found)
        state.requested_slot = decision.requested_slot
        return Understood(state, analysis, decision, found)

    def answered(self, understood: Understood, result: ActionResult) -> Decision:
        """The decision again once a webhook or a client's tool answered (as the pipeline's _act does)."""
        if understood.state.handed_off:
            understood.state.handoff_notified = result.ok
        else:
            record_action(understood.state, (), result.slots)
        return decide(understood.state, understood.analysis, self.domain, result=result, found=understood.found)


def load_engine(domain_path: str | Path | None = None) -> Engine:
    """The packaged (or given) domain with the real MiniLM encoder, as the server loads them."""
    domain = load_domain(domain_path)
    encoder = TextEncoder.load(str(default_text_model()), placement=resolve_placement("cpu"), offline=True)
    tracker = DialogueTracker(domain, IntentClassifier.of(domain, encoder.predict_batch), SentimentAnalyzer())
    kb = knowledge_path(domain_path)
    entries = load_knowledge(kb) if kb is not None else ()
    knowledge = KnowledgeBase(entries, encoder.predict_batch) if entries else None
    return Engine(domain, tracker, knowledge, lambda texts: list(encoder.predict_batch(texts)))


@dataclass(frozen=True)
class Paraphrases:
    """The paraphrase sets (<domain>.paraphrases.yaml), each split into phrasings for training dialogues
    and phrasings reserved for held-out ones."""

    lists: dict[str, tuple[str, ...]]

    def pick(self, key: str, rng: random.Random, *, heldout: bool) -> str:
        """A phrasing of list `key`: never a reserved one in a training dialogue; a reserved one in a
        held-out dialogue where the list has one."""
        texts = self.lists[key]
        free = [text for text in texts if not reserved(text)]
        kept = [text for text in texts if reserved(text)] if heldout else []
        return rng.choice(kept or free)

    def every(self) -> list[str]:
        return [text for texts in self.lists.values() for text in texts]


def reserved(phrasing: str) -> bool:
    """Whether `phrasing` is kept for held-out dialogues (a stable hash, so train never sees it)."""
    return int(hashlib.sha256(phrasing.encode()).hexdigest(), 16) % RESERVE_ONE_IN == 0


def paraphrases_path(domain_path: str | Path | None = None) -> Path:
    source = Path(domain_path) if domain_path is not None else DEFAULT_DOMAIN_PATH
    return source.with_name(source.name.removesuffix(source.suffix) + ".paraphrases.yaml")


def load_paraphrases(path: str | Path | None = None) -> Paraphrases:
    raw = yaml.safe_load(Path(path or paraphrases_path()).read_text(encoding="utf-8"))
    lists: dict[str, tuple[str, ...]] = {}
    _flatten(raw, "", lists)
    if only_reserved := [key for key, texts in lists.items() if all(reserved(text) for text in texts)]:
        raise ValueError(f"paraphrase lists {only_reserved} have no phrasing a training dialogue may use")
    return Paraphrases(lists)


def _flatten(raw: Any, prefix: str, into: dict[str, tuple[str, ...]]) -> None:
    """{"tasks": {"order_status": [...]}} -> {"tasks.order_status": (...)}."""
    for key, value in raw.items():
        if isinstance(value, dict):
            _flatten(value, f"{prefix}{key}.", into)
        else:
            into[f"{prefix}{key}"] = tuple(str(text) for text in value)


@dataclass
class Goal:
    """What one simulated customer wants, and how their conversation goes."""

    intent: str
    values: dict[str, str]  # slot -> value they give when asked
    plan: list[str]  # steps after the task is stated, in order
    mood: str = "plain"  # "plain" | "angry" | "polite"
    switch_to: str | None = None  # the task a "switch" step moves to
    photo: bool = False  # shows a document instead of typing one detail
    voice: bool = False  # says one turn in a voice message
    heldout: str | None = None  # None | "phrasing" | "values" | "flow"
    given: list[str] = field(default_factory=list)  # slots already given, newest last


def make_goal(domain: Domain, pool: ValuePool, rng: random.Random, *, heldout: str | None, photo: bool,
              voice: bool) -> Goal:
    """A customer: a task, the details they hold, a plan of steps; `heldout` "flow" makes a task switch only
    held-out dialogues make (training dialogues never do)."""
    tasks = [name for name, spec in domain.intents.items() if not spec.keeps_active and not spec.social
             and name != HANDOFF_INTENT]
    plan: list[str] = []
    switch_to = None
    if heldout == "flow":
        intent, switch_to = rng.choice(sorted(HELDOUT_SWITCHES))
    else:
        intent = rng.choice(tasks)
        if rng.random() < 0.15:
            switch_to = rng.choice([t for t in tasks if t != intent and (intent, t) not in HELDOUT_SWITCHES])
    if rng.random() < 0.3:
        plan.append("greet")
    if photo and rng.random() < 0.15:
        plan.append("photo_first")
    plan.append("task")
    for _ in range(rng.choice((0, 0, 1, 1, 2))):
        plan.insert(rng.randrange(plan.index("task") + 1, len(plan) + 1), rng.choice(ASIDES))
    if intent == "order_status" and rng.random() < FOLLOW_UP_SHARE:
        plan.append("follow_up")
    if rng.random() < 0.15:
        plan.append("correct")
    if switch_to is not None:
        plan.append("switch")
    if rng.random() < 0.1:
        plan.append(rng.choice(("handoff", "angry_handoff")))
    if rng.random() < 0.4:
        plan.append("bye")
    mood = rng.choices(("plain", "angry", "polite"), weights=(5, 2, 3))[0]
    return Goal(intent, _values(domain, pool, rng), plan, mood, switch_to, photo, voice, heldout)


def _values(domain: Domain, pool: ValuePool, rng: random.Random) -> dict[str, str]:
    return {
        "order_id": rng.choice(pool.order_ids), "email": rng.choice(pool.emails), "phone": rng.choice(pool.phones),
        "amount": rng.choice(pool.amounts), "tracking_number": rng.choice(pool.tracking_numbers),
        "product": rng.choice(pool.products), "error_code": rng.choice(pool.error_codes),
        "expected_day": rng.choice(DAYS),
    }


class Customer:
    """Says the turns of one goal, answering what the assistant asks for."""

    def __init__(self, goal: Goal, phrases: Paraphrases, pool: ValuePool, domain: Domain, rng: random.Random) -> None:
        self.goal, self.phrases, self.pool, self.domain, self.rng = goal, phrases, pool, domain, rng
        self.steps = list(goal.plan)
        self.photo_left, self.voice_left = goal.photo, goal.voice

    def next_turn(self, state: DialogueState, decision: Decision | None) -> UserTurn | None:
        """The customer's next turn after `decision` (None before the first), or None when they are done."""
        if state.handed_off and decision is not None:
            return None  # a person has the conversation now
        asked = decision.requested_slot if decision is not None else None
        interrupt = self.steps and self.steps[0] not in ("task", "bye") and self.rng.random() < 0.35
        if asked is not None and asked in self.goal.values and not interrupt:
            return self._finish(self._inform(asked))
        if not self.steps:
            return None
        return self._finish(self._step(self.steps.pop(0)))

    def _step(self, step: str) -> UserTurn:
        heldout = self.goal.heldout == "phrasing"
        pick = self.phrases.pick
        if step == "greet":
            return UserTurn(pick("greetings", self.rng, heldout=heldout), step=step)
        if step == "photo_first":
            return self._photo("order_id", step=step)
        if step in ("task", "switch"):
            if step == "switch":
                assert self.goal.switch_to is not None
                self.goal.intent = self.goal.switch_to
            return self._task(step)
        if step == "correct":
            return self._correct()
        if step == "volunteer":
            offered = [slot for slot in VOLUNTEERED if slot not in self.goal.given] or ["phone"]
            slot = self.rng.choice(offered)
            self.goal.given.append(slot)
            return UserTurn(self._inform_words(slot), step="inform")
        if step == "error_question":
            code = self.rng.choice(self.pool.error_codes + UNKNOWN_CODES[:1])
            return UserTurn(pick("error_questions", self.rng, heldout=heldout).format(code=code), step=step)
        return UserTurn(pick(STEP_PHRASES[step], self.rng, heldout=heldout), step=step)

    def _task(self, step: str) -> UserTurn:
        heldout = self.goal.heldout == "phrasing"
        text = self.phrases.pick(f"tasks.{self.goal.intent}", self.rng, heldout=heldout)
        product = self.goal.values["product"]
        if "{product}" in text:
            self.goal.given.append("product")
        text = text.format(product=self._synonym(product))
        needs = self.domain.intents[self.goal.intent].required_slots
        if self.photo_left and not any(slot in PHOTO_SLOTS for slot in needs):  # no question a photo answers
            shown = self._photo("error_code" if self.goal.intent == "technical_support" else "order_id", step=step)
            return UserTurn(text, read=shown.read, photos=shown.photos, step=step)
        inline = [slot for slot in needs if slot not in self.goal.given and slot != "product"]
        if inline and not self.photo_left and self.rng.random() < 0.3:  # "my lamp arrived broken, order 4512"
            slot = inline[0]
            text += ", " + self._inform_words(slot)
            self.goal.given.append(slot)
        return UserTurn(text, step=step)

    def _inform(self, slot: str) -> UserTurn:
        if self.photo_left and slot in PHOTO_SLOTS:
            return self._photo(slot, step="inform")
        self.goal.given.append(slot)
        return UserTurn(self._inform_words(slot), step="inform")

    def _inform_words(self, slot: str) -> str:
        heldout = self.goal.heldout == "phrasing"
        value = self.goal.values[slot]
        said = self._synonym(value) if slot == "product" else value
        key = f"inform.{slot}" if f"inform.{slot}" in self.phrases.lists else "inform.order_id"
        return self.phrases.pick(key, self.rng, heldout=heldout).format(value=said)

    def _correct(self) -> UserTurn:
        """A new value for the detail given last ("sorry, I meant 4513")."""
        slot = self.goal.given[-1] if self.goal.given else None
        fresh = _values(self.domain, self.pool, self.rng)[slot] if slot in CORRECTED else None
        if slot is None or fresh is None or fresh == self.goal.values[slot]:  # nothing to correct: ask back
            return UserTurn(self.phrases.pick("recall", self.rng, heldout=self.goal.heldout == "phrasing"), step="recall")
        self.goal.values[slot] = fresh
        text = self.phrases.pick("corrections", self.rng, heldout=self.goal.heldout == "phrasing")
        said = self._synonym(fresh) if slot == "product" else fresh
        return UserTurn(text.format(value=said, label=slot.replace("_id", " number").replace("_", " ")), step="correct")

    def _photo(self, slot: str, *, step: str) -> UserTurn:
        """A photo of a document that carries `slot` (and what else such a document shows)."""
        self.photo_left = False
        values = self.goal.values
        if slot == "error_code":
            if self.rng.random() < 0.3:  # a code the knowledge base does not know
                values["error_code"] = self.rng.choice(UNKNOWN_CODES)
            lines: tuple[str, ...] = (f"ERROR {values['error_code']}", "Please restart the device")
            spec = ImageSpec(kind="error_screen", lines=lines, dark=self.rng.random() < 0.7,
                             rotate=self.rng.uniform(-6, 6), format=self.rng.choice(("jpeg", "png")))
        elif slot == "tracking_number" or (slot == "order_id" and self.rng.random() < 0.4):
            lines = (f"Order: {values['order_id']}", f"Tracking: {values['tracking_number']}",
                     f"Estimated delivery: {values['expected_day']}", f"Carrier: {self.rng.choice(CARRIERS)}")
            spec = ImageSpec(kind="shipping_label", lines=lines, rotate=self.rng.uniform(-8, 8),
                             format=self.rng.choice(("jpeg", "png")))
        elif slot == "order_id" and self.rng.random() < 0.4:  # an order confirmation that shows the number alone
            lines = (f"Order number: {values['order_id']}", "Thank you for your order")
            spec = ImageSpec(kind="document", lines=lines, dark=self.rng.random() < 0.3,
                             rotate=self.rng.uniform(-6, 6), format=self.rng.choice(("jpeg", "png")))
        else:
            product = values["product"].replace("_", " ").title()
            lines = (f"Order No: {values['order_id']}", f"Item: {product}", f"Total: {values['amount']}")
            spec = ImageSpec(kind="receipt", lines=lines, rotate=self.rng.uniform(-8, 8),
                             format=self.rng.choice(("jpeg", "png")))
        header = {"receipt": "RECEIPT", "shipping_label": "SHIP TO"}.get(spec.kind)
        read = "\n".join(([header] if header else []) + list(lines))
        self.goal.given.append(slot)
        caption = self.phrases.pick("photo_captions", self.rng, heldout=self.goal.heldout == "phrasing")
        return UserTurn(caption, read=(read,), photos=(spec,), step=step)

    def _finish(self, turn: UserTurn) -> UserTurn:
        """The customer's mood, slips and voice on a turn."""
        text = turn.text
        if not text:
            return turn
        if self.goal.mood == "angry" and self.rng.random() < 0.5:
            text = f"{self.phrases.pick('angry', self.rng, heldout=self.goal.heldout == 'phrasing')} {text}"
        elif self.goal.mood == "polite" and self.rng.random() < 0.5:
            text = f"{text} {self.phrases.pick('polite', self.rng, heldout=self.goal.heldout == 'phrasing')}"
        if self.rng.random() < 0.12:
            text = typo(text, self.rng, keep=tuple(self.goal.values.values()))
        if self.voice_left and not turn.photos and turn.step in ("task", "inform", "switch"):
            self.voice_left = False
            heard = self._spoken_values(text)
            voice = AudioSpec(say=heard, voice=self.rng.choice(VOICES), speed=self.rng.randrange(130, 190, 10))
            return UserTurn(heard=heard, voice=voice, step=turn.step)
        return UserTurn(text, turn.heard, turn.read, turn.photos, turn.voice, turn.step)

    def _spoken_values(self, text: str) -> str:
        """A transcript as a recogniser might write it: ids and emails read out half the time."""
        if self.rng.random() < 0.5:
            return text
        for slot in ("order_id", "email", "phone"):
            value = self.goal.values[slot]
            text = text.replace(value, spoken(value))
        return text

    def _synonym(self, product: str) -> str:
        """A product as people name it: "coffee_maker" is a coffee machine, an espresso machine..."""
        names = self.domain.slots["product"].values.get(product) or (product.replace("_", " "),)
        return self.rng.choice(names)
