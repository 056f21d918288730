"""State tracking s_t = f(s_{t-1}, e_t): intent, slots and sentiment from one turn's evidence."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from app.dialogue.domain import Domain
from app.dialogue.sentiment import SentimentAnalyzer
from app.dialogue.slots import extract_slots
from app.dialogue.state import DialogueState, SlotSource

# Cosine similarities of all-MiniLM-L6-v2: below MIN_INTENT_SCORE nothing matches
# well enough to act on; an active task only yields to a clearly different one.
MIN_INTENT_SCORE = 0.35
SWITCH_INTENT_SCORE = 0.5


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


@dataclass(frozen=True)
class TurnAnalysis:
    """What this turn alone showed; the policy reads it beside the new state."""

    act: str | None  # best intent (task or meta) of this turn
    act_score: float
    asked_slots: tuple[str, ...]  # slots the user asked about ("what was my order number?")
    filled: tuple[str, ...]  # slots this turn set or changed
    handed_over: bool = False  # this turn passed the conversation to a person


TOP_K = 2  # an intent scores the mean of its k nearest examples: one stray example cannot win alone


class IntentClassifier:
    """Nearest examples by sentence embedding."""

    def __init__(self, example_intents: list[str], example_embeddings: np.ndarray) -> None:
        assert example_embeddings.ndim == 2 and len(example_intents) == example_embeddings.shape[0]
        self.example_embeddings = example_embeddings  # (E, D), unit rows
        self.intents = sorted(set(example_intents))
        self.rows = [np.flatnonzero(np.array(example_intents) == name) for name in self.intents]

    def classify(self, embedding: np.ndarray) -> tuple[str, float]:
        similarities = self.example_embeddings @ embedding  # (E,)
        scores = [float(np.sort(similarities[rows])[-TOP_K:].mean()) for rows in self.rows]
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

    def update(self, state: DialogueState, turn: TurnInput) -> tuple[DialogueState, TurnAnalysis]:
        new = state.model_copy(deep=True)
        new.turns = state.turns + 1
        act, act_score = self._classify(turn)
        filled = self._fill_slots(new, turn)
        if act == "ask_recall" and filled and not _is_question(turn.utterance):
            act = "inform"  # "my order number is 4512" names a slot but asks nothing
        if act is not None:
            new.last_act = act
            if self._takes_over(state, act, act_score):
                new.intent, new.intent_confidence = act, round(act_score, 3)
        if turn.utterance:
            mood = self.sentiment(self.issue_words.sub(" ", turn.utterance) if self.issue_words else turn.utterance)
            new.sentiment, new.sentiment_score = mood.label, round(mood.score, 3)
            if mood.score <= self.domain.handoff_sentiment or new.intent == "human_agent":
                new.handed_off = True
        asked = self._asked_slots(turn.utterance) if act == "ask_recall" else ()
        return new, TurnAnalysis(act=act, act_score=act_score, asked_slots=asked, filled=filled,
                                 handed_over=new.handed_off and not state.handed_off)

    def _classify(self, turn: TurnInput) -> tuple[str | None, float]:
        if turn.embedding is None:
            return None, 0.0
        act, score = self.classifier.classify(turn.embedding)
        return (act, score) if score >= MIN_INTENT_SCORE else (None, score)

    def _takes_over(self, state: DialogueState, act: str, score: float) -> bool:
        if self.domain.intents[act].keeps_active:
            return False
        if state.intent is None or act == state.intent or score >= SWITCH_INTENT_SCORE:
            return True
        return not self.domain.intents[state.intent].required_slots  # social intents hold nothing open

    def _fill_slots(self, state: DialogueState, turn: TurnInput) -> tuple[str, ...]:
        filled: list[str] = []
        for piece in turn.evidence:
            found = extract_slots(piece.text, self.domain.slots, requested_slot=state.requested_slot)
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
        return tuple(filled)

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
