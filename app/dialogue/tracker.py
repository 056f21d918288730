"""State tracking s_t = f(s_{t-1}, e_t): intent, slots and sentiment from one turn's evidence."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from app.dialogue.clauses import correction_rest, is_correction, split_clauses
from app.dialogue.domain import Domain
from app.dialogue.sentiment import SentimentAnalyzer
from app.dialogue.slots import SlotValue, extract_slots
from app.dialogue.state import DialogueState, SlotSource

# Cosine similarities of all-MiniLM-L6-v2: below MIN_INTENT_SCORE nothing matches
# well enough to act on; an active task only yields to a clearly different one.
MIN_INTENT_SCORE = 0.35
SWITCH_INTENT_SCORE = 0.5
HANDOFF_INTENT = "human_agent"  # the intent that passes the conversation to a person
# Asked for a person, the customer gets one over an open task: "fine, get me a person" scored 0.45-0.47 beside
# an order-status conversation; "can a person sign for it?" (0.40) and "is there a real person who checks
# this?" (0.44) ask no handoff.
HANDOFF_SCORE = 0.45
# Which act of a message of several wins: a task, then a meta act (inform, ask_recall), then small talk
# ("It's 4512. Thanks." informs; "Hi! My lamp arrived broken." is about the lamp).
NOTHING, SOCIAL, META, TASK = range(4)


@dataclass(frozen=True)
class Evidence:
    """One piece of text a turn brought, with the modality it came from."""

    text: str
    modality: str  # "text" | "audio" | "image"
    confidence: float = 1.0


@dataclass(frozen=True)
class TurnInput:
    evidence: tuple[Evidence, ...]
    utterance: str  # what the user said (typed or spoken): the text intent and sentiment read
    embedding: np.ndarray | None  # (D,) unit vector of `utterance`, None when nothing was said
    # Each clause of an utterance of several, with its (D,) unit vector; () reads the utterance as one act.
    clauses: tuple[tuple[str, np.ndarray], ...] = ()


@dataclass(frozen=True)
class TurnAnalysis:
    """What this turn alone showed; the policy reads it beside the new state."""

    act: str | None  # best intent (task or meta) of this turn
    act_score: float
    asked_slots: tuple[str, ...]  # slots a question names ("what was my order number?", "what's the tracking number?")
    filled: tuple[str, ...]  # slots this turn set or changed
    handed_over: bool = False  # this turn passed the conversation to a person
    corrected: tuple[str, ...] = ()  # slots whose earlier value this turn replaced ("sorry, it's 4513")
    took_over: bool = False  # this turn made `act` the active task; it was not the task before


TOP_K = 2  # an intent scores the mean of its k nearest examples: one stray example cannot win alone


class IntentClassifier:
    """Nearest examples by sentence embedding."""

    def __init__(self, example_intents: list[str], example_embeddings: np.ndarray) -> None:
        assert example_embeddings.ndim == 2 and len(example_intents) == example_embeddings.shape[0]
        self.example_embeddings = example_embeddings  # (E, D), unit rows
        self.intents = sorted(set(example_intents))
        self.rows = [np.flatnonzero(np.array(example_intents) == name) for name in self.intents]

    @classmethod
    def of(cls, domain: Domain, embed: Callable[[list[str]], np.ndarray]) -> IntentClassifier:
        """The domain's intent examples, embedded with `embed` (texts -> (E, D) unit rows)."""
        names = [name for name, intent in domain.intents.items() for _ in intent.examples]
        examples = [text for intent in domain.intents.values() for text in intent.examples]
        return cls(names, np.asarray(embed(examples)))

    def classify(self, embedding: np.ndarray, among: Callable[[str], bool] = lambda _: True) -> tuple[str, float]:
        """The best intent (of those `among` accepts) and its score."""
        similarities = self.example_embeddings @ embedding  # (E,)
        scores = [float(np.sort(similarities[rows])[-TOP_K:].mean()) if among(name) else -1.0
                  for name, rows in zip(self.intents, self.rows, strict=True)]
        best = int(np.argmax(scores))
        return self.intents[best], scores[best]


class DialogueTracker:
    def __init__(self, domain: Domain, classifier: IntentClassifier, sentiment: SentimentAnalyzer) -> None:
        self.domain = domain
        self.classifier = classifier
        self.sentiment = sentiment
        # Words that report what went wrong ("broken", "stolen") describe the order, not the customer's
        # mood: without them "my lamp arrived broken" is not a reason to call a human.
        issue_words = sorted(
            {w for spec in domain.slots.values() if spec.type == "issue" for syn in spec.values.values() for w in syn},
            key=len, reverse=True,
        )
        self.issue_words = re.compile(r"\b(?:" + "|".join(map(re.escape, issue_words)) + r")\b", re.I) if issue_words else None
        # Slot names that start a clause of their own in an unpunctuated transcript ("... the order number is 4512").
        self.slot_mentions = tuple(m for spec in domain.slots.values() if not spec.values for m in spec.mentions)

    def texts_to_embed(self, utterance: str) -> list[str]:
        """What the caller embeds for `turn_input`: the utterance, then each clause when it has several."""
        if not utterance.strip():
            return []
        clauses = split_clauses(utterance, self.slot_mentions)
        return [utterance, *clauses] if len(clauses) > 1 else [utterance]

    def turn_input(self, evidence: tuple[Evidence, ...], utterance: str, vectors: Sequence[np.ndarray]) -> TurnInput:
        """`vectors`: the (D,) embeddings of `texts_to_embed(utterance)`, in that order."""
        texts = self.texts_to_embed(utterance)
        assert len(vectors) == len(texts), (len(vectors), len(texts))
        embedding = vectors[0] if texts else None
        return TurnInput(evidence, utterance, embedding, clauses=tuple(zip(texts[1:], vectors[1:], strict=True)))

    def update(self, state: DialogueState, turn: TurnInput) -> tuple[DialogueState, TurnAnalysis]:
        new = state.model_copy(deep=True)
        new.turns = state.turns + 1
        correcting = is_correction(turn.utterance)
        filled = self._fill_slots(new, turn, correcting=correcting)
        # Filled means changed: a value that was there is replaced. A new product or issue is news, not a
        # correction, unless the user says it is one ("no, it's the kettle").
        corrected = tuple(name for name in filled if name in state.slots
                          and (correcting or not self.domain.slots[name].values))
        act, act_score = self._classify(turn, skip_corrections=correcting and bool(corrected))
        if act == "ask_recall" and filled and not _is_question(turn.utterance):
            act = "inform"  # "my order number is 4512" names a slot but asks nothing
        if act == "inform" and _is_question(turn.utterance) and turn.embedding is not None:
            # "where is order 99812?" resembles "order KX-55210" but asks something: the task it asks about wins
            task, score = self.classifier.classify(turn.embedding, among=lambda name: self._tier(name) == TASK)
            if score >= SWITCH_INTENT_SCORE:
                act, act_score = task, score
        if self._tier(act) < TASK and (implied := self._implied_intent(new, filled)):
            act, act_score = implied
        if act is not None:
            new.last_act = act
            if self._takes_over(state, act, act_score):
                new.intent, new.intent_confidence = act, round(act_score, 3)
        if turn.utterance:
            mood = self.sentiment(self.issue_words.sub(" ", turn.utterance) if self.issue_words else turn.utterance)
            new.sentiment, new.sentiment_score = mood.label, round(mood.score, 3)
            if mood.score <= self.domain.handoff_sentiment or new.intent == HANDOFF_INTENT:
                new.handed_off = True
        asked = self._asked_slots(turn.utterance) if act == "ask_recall" or _is_question(turn.utterance) else ()
        return new, TurnAnalysis(act=act, act_score=act_score, asked_slots=asked, filled=filled,
                                 handed_over=new.handed_off and not state.handed_off, corrected=corrected,
                                 took_over=new.intent != state.intent)

    def _classify(self, turn: TurnInput, *, skip_corrections: bool) -> tuple[str | None, float]:
        """The act of the whole message and of each clause; a task said anywhere in it beats a meta act
        (inform, ask_recall), which beats small talk: a meta act is the act only of a message without a task.
        In a correction, what the correcting clause resembles ("I gave you the wrong number") is no act."""
        if turn.embedding is None:
            return None, 0.0
        candidates = [(turn.utterance, turn.embedding), *turn.clauses]
        scored: list[tuple[int, float, str | None]] = []
        for text, embedding in candidates:
            act, score = self.classifier.classify(embedding)
            if skip_corrections and self._tier(act) != META and is_correction(text):
                continue
            scored.append((self._tier(act) if score >= MIN_INTENT_SCORE else NOTHING, score, act))
        best_tier, best_score, best_act = max(scored, default=(NOTHING, 0.0, None))
        return (best_act, best_score) if best_tier > NOTHING else (None, best_score)

    def _tier(self, act: str | None) -> int:
        if act is None:
            return NOTHING
        intent = self.domain.intents[act]
        return META if intent.keeps_active else SOCIAL if intent.social else TASK

    def _implied_intent(self, state: DialogueState, filled: tuple[str, ...]) -> tuple[str, float] | None:
        """A turn whose words name no task but that brought a slot implying one ("ERROR E-203" on a photo)."""
        for name, intent in self.domain.intents.items():
            for slot in intent.implied_by:
                if slot in filled:
                    return name, state.slot_sources[slot].confidence
        return None

    def _takes_over(self, state: DialogueState, act: str, score: float) -> bool:
        if self.domain.intents[act].keeps_active:
            return False
        # Small talk does not close a task still waiting for a detail: "ok thank you" is no goodbye then.
        if self.domain.intents[act].social and state.requested_slot is not None:
            return False
        if state.intent is None or act == state.intent or score >= SWITCH_INTENT_SCORE:
            return True
        if act == HANDOFF_INTENT and score >= HANDOFF_SCORE:
            return True
        return not self.domain.intents[state.intent].required_slots  # social intents hold nothing open

    def _fill_slots(self, state: DialogueState, turn: TurnInput, *, correcting: bool) -> tuple[str, ...]:
        """Slots from every piece of evidence. A correction ("sorry, it's 4513") is read as an answer for the
        slot it corrects, as an answer to our question is read for the slot asked for."""
        filled: list[str] = []
        asked = self._corrected_slot(state, turn.utterance) if correcting else None
        asked = asked or state.requested_slot or self._awaited_slot(state, turn.utterance)
        for piece in turn.evidence:
            found = extract_slots(piece.text, self.domain.slots, requested_slot=asked)
            if asked is not None and asked not in found and piece.modality != "image":
                found |= self._answer_in_a_clause(piece.text, asked)
            if correcting and asked is not None and asked not in found and piece.modality != "image":
                found |= self._corrected_value(piece.text, asked, state.slots.get(asked, ""))
            for name, slot in found.items():
                if state.slots.get(name) == slot.value:
                    continue
                state.slots[name] = slot.value
                state.slot_sources[name] = SlotSource(
                    modality=piece.modality, turn=state.turns, confidence=round(slot.confidence * piece.confidence, 3)
                )
                filled.append(name)
        if state.requested_slot in state.slots:
            state.requested_slot = None
        return tuple(dict.fromkeys(filled))

    def _awaited_slot(self, state: DialogueState, utterance: str) -> str | None:
        """For a message that is one bare value ("4410"), sent when we asked for nothing: the open task's first
        required slot not told yet, which it answers as if we had asked."""
        if state.intent is None or len(utterance.split()) != 1:
            return None
        return next((name for name in self.domain.intents[state.intent].required_slots if name not in state.slots),
                    None)

    def _answer_in_a_clause(self, text: str, asked: str) -> dict[str, SlotValue]:
        """The asked-for value as one clause of several: "Sorry, I gave you the wrong number. It is 4513." """
        only = {asked: self.domain.slots[asked]}
        clauses = split_clauses(text, self.slot_mentions)
        for clause in clauses if len(clauses) > 1 else ():
            if found := extract_slots(clause, only, requested_slot=asked):
                return found
        return {}

    def _corrected_value(self, text: str, asked: str, old_value: str) -> dict[str, SlotValue]:
        """The new value of a correction that also says the old one or wraps the new one in its own words."""
        spec = self.domain.slots[asked]
        rest = correction_rest(text, old_value=old_value, mentions=spec.mentions)
        return extract_slots(rest, {asked: spec}, requested_slot=asked)

    def _corrected_slot(self, state: DialogueState, utterance: str) -> str | None:
        """The slot a correction is about: the one it names ("wrong email"), else the one told last."""
        told = {name: source.turn for name, source in state.slot_sources.items()
                if name in self.domain.slots and not self.domain.slots[name].values}  # vocabulary needs no help
        named = [name for name in told if name in self._asked_slots(utterance)]
        return max(named or told, key=lambda name: told[name], default=None)

    def _asked_slots(self, utterance: str) -> tuple[str, ...]:
        text = utterance.lower()
        return tuple(
            name
            for name, spec in self.domain.slots.items()
            if any(re.search(rf"\b{re.escape(m)}\b", text) for m in spec.mentions)
        )


def record_action(state: DialogueState, provides: tuple[str, ...], slots: dict[str, str]) -> None:
    """Put an action's answer into the state (source modality "action"); what an earlier call provided
    and this one did not (or a failed call) is dropped, so an old order status is never repeated as new."""
    for name in provides:
        state.slots.pop(name, None)
        state.slot_sources.pop(name, None)
    for name, value in slots.items():
        state.slots[name] = value
        state.slot_sources[name] = SlotSource(modality="action", turn=state.turns, confidence=1.0)


QUESTION_START = re.compile(r"^\s*(what|which|who|where|when|how|do|does|did|can|could|remind|tell)\b", re.I)


def _is_question(utterance: str) -> bool:
    return utterance.rstrip().endswith("?") or bool(QUESTION_START.match(utterance))
