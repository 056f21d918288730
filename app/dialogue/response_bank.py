"""Response bank: delexicalised phrasings per act, kept as data beside the domain (<domain>.responses.yaml).

The training data of the reply model (app/dialogue/dataset.py) takes its targets from here: for each turn
the policy decided, `ResponseBank.compose` builds a reply from the act's phrasings, an empathetic opening
when the customer reads negative, a confirmation of a corrected detail, where a photo's or a voice clip's
detail came from, and the facts the act's phrasing does not word. The file's own comments describe it.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from app.dialogue.decision_text import PLACEHOLDER, DecisionText, act_name
from app.dialogue.domain import DEFAULT_DOMAIN_PATH, Domain, DomainError
from app.dialogue.policy import ANYTHING_ELSE, Decision
from app.dialogue.state import DialogueState

MIN_PHRASINGS = 8  # per list: fewer and the model learns sentences, not how to say things
# Facts the policy states that are no slot: a knowledge answer, an error code, what a photo showed.
POLICY_FACTS = ("answer", "code", "expected", "carrier")
FIELD = re.compile(r"\{(\w+)\}")  # {label}, {slot}, {noted}, {recalled}: filled when composing
# Acts whose phrasing lists sit directly under `acts` (respond and ask_slot have one list per intent/slot).
PLAIN_ACTS = ("answer", "answer_from_photo", "unknown_question", "unknown_code", "off_topic", "not_fixed",
              "fallback", "acknowledge", "acknowledge_photo", "help_offer", "anything_else", "unknown_fact", "recall",
              "recall_nothing", "recall_missing", "handoff", "handoff_acted", "handed_off", "handoff_failed",
              "action_unavailable", "acted")


@dataclass(frozen=True)
class ResponseBank:
    openings: tuple[str, ...]
    corrections: tuple[str, ...]
    sources: dict[str, tuple[str, ...]]  # modality -> phrasings with {label} and [{slot}]
    facts: dict[str, tuple[str, ...]]  # fact name (or "default") -> phrasings
    respond: dict[str, tuple[str, ...]]  # intent -> phrasings
    ask_slot: dict[str, tuple[str, ...]]  # slot -> phrasings
    acts: dict[str, tuple[str, ...]]  # PLAIN_ACTS -> phrasings

    def phrasings(self) -> dict[str, tuple[str, ...]]:
        """Every list, by a readable key ("respond.order_status", "sources.image", "openings")."""
        lists = {"openings": self.openings, "corrections": self.corrections}
        lists |= {f"sources.{k}": v for k, v in self.sources.items()} | {f"facts.{k}": v for k, v in self.facts.items()}
        lists |= {f"respond.{k}": v for k, v in self.respond.items()}
        lists |= {f"ask_slot.{k}": v for k, v in self.ask_slot.items()}
        return lists | dict(self.acts)

    def compose(
        self, decision: Decision, state: DialogueState, domain: Domain, described: DecisionText, *,
        corrected: tuple[str, ...] = (), rng: random.Random,
    ) -> str:
        """A delexicalised reply to `decision` (described by `described`), one phrasing picked per part."""
        act = act_name(decision, domain)
        core = self._core(act, decision, state, described, rng)
        parts = []
        if state.sentiment == "negative" and "sorry" not in core.lower() and not act.startswith("hand"):
            parts.append(rng.choice(self.openings))
        parts += [_about(rng.choice(self.corrections), name) for name in corrected if name in described.values]
        parts += [_about(rng.choice(self.acts["unknown_fact"]), name) for name in decision.unknown]
        in_core = {described.values[name] for name in PLACEHOLDER.findall(core) if name in described.values}
        for name, modality in described.sources.items():  # ids and addresses, not a word like "damaged"
            if (name in domain.slots and not domain.slots[name].values and modality in self.sources
                    and described.values[name] not in in_core):  # "the photo shows error [code]" says it already
                parts.append(_about(rng.choice(self.sources[modality]), name))
        if decision.acted and act == "respond":
            parts.append(rng.choice(self.acts["acted"]))
        said = set(PLACEHOLDER.findall(" ".join([*parts, core])))
        facts = [_about(rng.choice(self.facts.get(name) or self.facts["default"]), name)
                 for name in described.required if name not in said]
        parts += [*facts, core] if act == "ask_slot" else [core, *facts]  # a question comes last
        if decision.requested_slot is not None and act != "ask_slot":  # an aside, then the task goes on
            parts.append(rng.choice(self.ask_slot[decision.requested_slot]))
        return " ".join(parts)

    def _core(self, act: str, decision: Decision, state: DialogueState, described: DecisionText,
              rng: random.Random) -> str:
        """The act's own phrasing."""
        if act == "respond":
            assert state.intent is not None
            return rng.choice(self.respond[state.intent])
        if act == "ask_slot":
            assert decision.requested_slot is not None
            question = rng.choice(self.ask_slot[decision.requested_slot])
            if state.last_act != "ask_recall":
                return question
            return f"{_about(rng.choice(self.acts['recall_missing']), decision.requested_slot)} {question}"
        if act == "answer" and "code" in described.values and decision.draft.startswith("The photo shows error"):
            return rng.choice(self.acts["answer_from_photo"])
        if act == "unknown_question" and "code" in described.values:
            return f"{rng.choice(self.acts['unknown_code'])} {rng.choice(self.acts['unknown_question'])}"
        if act == "acknowledge":
            noted = rng.choice(self.acts["acknowledge_photo"]) if not described.required else _listing(
                rng.choice(self.acts["acknowledge"]), "noted", "your {label} [{slot}]", described.required)
            if decision.requested_slot is not None:  # the task's question follows (compose)
                return noted
            done = decision.draft.endswith(ANYTHING_ELSE)
            return f"{noted} {rng.choice(self.acts['anything_else' if done else 'help_offer'])}"
        if act == "recall":
            if not described.required:
                return rng.choice(self.acts["recall_nothing"])
            return _listing(rng.choice(self.acts["recall"]), "recalled", "your {label} is [{slot}]", described.required)
        if act == "handoff" and decision.acted:
            return rng.choice(self.acts["handoff_acted"])
        return rng.choice(self.acts[act])


def responses_path(domain_path: str | Path | None = None) -> Path:
    """The bank beside a domain file: <stem>.responses.yaml."""
    source = Path(domain_path) if domain_path is not None else DEFAULT_DOMAIN_PATH
    return source.with_name(source.name.removesuffix(source.suffix) + ".responses.yaml")


def load_bank(domain: Domain, path: str | Path | None = None) -> ResponseBank:
    """The bank at `path` (default: the packaged domain's), checked against `domain`: a list for every act,
    intent and slot the policy can produce, at least MIN_PHRASINGS each, and placeholders that name its
    slots or the policy's facts."""
    source = Path(path) if path is not None else responses_path()
    raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    acts = raw["acts"]
    bank = ResponseBank(
        openings=_texts(raw["openings"]), corrections=_texts(raw["corrections"]),
        sources={k: _texts(v) for k, v in raw["sources"].items()}, facts={k: _texts(v) for k, v in raw["facts"].items()},
        respond={k: _texts(v) for k, v in acts["respond"].items()},
        ask_slot={k: _texts(v) for k, v in acts["ask_slot"].items()},
        acts={name: _texts(acts[name]) for name in PLAIN_ACTS if name in acts},
    )
    _check(bank, domain, source)
    return bank


def _check(bank: ResponseBank, domain: Domain, source: Path) -> None:
    tasks = [name for name, spec in domain.intents.items() if not spec.keeps_active]
    wanted = [f"respond.{name}" for name in tasks] + [f"ask_slot.{name}" for name in domain.slots]
    wanted += [*PLAIN_ACTS, "facts.default", "sources.image", "sources.audio"]
    lists = bank.phrasings()
    if absent := [key for key in wanted if key not in lists]:
        raise DomainError(f"{source}: no phrasings for {absent}")
    if short := [key for key, texts in lists.items() if len(set(texts)) < MIN_PHRASINGS]:
        raise DomainError(f"{source}: fewer than {MIN_PHRASINGS} distinct phrasings in {short}")
    known = set(domain.slots) | set(POLICY_FACTS) | set(bank.facts) | {"{slot}"}
    for key, texts in lists.items():
        for text in texts:
            if unknown := [name for name in re.findall(r"\[([^\]]+)\]", text) if name not in known]:
                raise DomainError(f"{source}: {key}: '{text}' uses {unknown}, which name no slot or fact")
    for intent in tasks:
        for text in bank.respond[intent]:
            if left_out := [n for n in domain.intents[intent].required_slots if f"[{n}]" not in text]:
                raise DomainError(f"{source}: respond.{intent}: '{text}' leaves out {left_out}")


def _texts(raw: Any) -> tuple[str, ...]:
    return tuple(" ".join(str(text).split()) for text in raw)


def _about(phrasing: str, name: str) -> str:
    """A phrasing about one slot or fact: {label} and {Label} its label, {slot} its name."""
    label = label_of(name)
    return _fields(phrasing, {"label": label, "Label": label.capitalize(), "slot": name})


def _listing(phrasing: str, field: str, item: str, names: tuple[str, ...]) -> str:
    """`phrasing` with {field} (or {Field}) naming each of `names` as `item` says, joined with "and"."""
    listed = " and ".join(_about(item, name) for name in names)
    return _fields(phrasing, {field: listed, field.capitalize(): listed[:1].upper() + listed[1:]})


def _fields(phrasing: str, values: dict[str, str]) -> str:
    return FIELD.sub(lambda match: values.get(match.group(1), match.group(0)), phrasing)


def label_of(name: str) -> str:
    """How a reply names a slot or fact: order_id is the order number (as the policy words it)."""
    return name.replace("_id", " number").replace("_", " ")
