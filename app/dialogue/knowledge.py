"""Knowledge base: what a domain knows beyond its intents (error codes, policies, opening hours).

A domain ships one beside its file (customer_service.yaml -> customer_service.kb.yaml, .kb.yml
or .kb.md) or names it with `knowledge: <path>` at its top level. Entries are embedded once at
start-up with the server's sentence encoder. A question then finds, in this order:
  1. the entry of a code the turn brought: read off a photo (any spelling), or typed or spoken as the
     entry lists it or after an error word ("E-203", "error e203");
  2. nothing, when the turn named a code that no entry knows (never a neighbour's fix);
  3. when the question is about an error: the code the tracker holds (its error_code slot, whatever turn
     filled it), the entry's answer or that no entry knows it; else the entry of a code an earlier photo
     or clip showed;
  4. the entry nearest the question by cosine similarity, when it is near enough; an error code's entry only
     for a symptom ("my printer says it is offline"), not for an error the customer has yet to name ("my
     printer shows an error": Found.code_untold, and the policy asks for the code, never guesses it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from app.dialogue.domain import DEFAULT_DOMAIN_PATH, DomainError
from app.dialogue.state import DialogueState

KB_SUFFIXES = (".kb.yaml", ".kb.yml", ".kb.md")
# Cosine similarities of all-MiniLM-L6-v2 (measured on the default knowledge base, tests/dialogue/
# test_knowledge.py): paraphrases of an entry's questions score 0.65-1.0; unrelated store questions
# ("do you sell gift cards?") 0.3-0.45, and near misses ("can I collect my order in store?" -> the
# address-change entry) up to 0.56.
MIN_ANSWER_SCORE = 0.6
# "What does this error mean?" and its kind score at least this against ERROR_QUESTIONS; "how long do
# refunds take?" stays well below. Only such questions are answered from a code of an earlier turn.
ERROR_QUESTION_SCORE = 0.5
ERROR_QUESTIONS = (
    "what does this error mean?",
    "how do I fix this error?",
    "what does the code on the screen mean?",
    "what does this message mean and what should I do?",
    "what does it mean?",
)
_NOT_AN_ERROR = "".join(f"(?<!{word} )" for word in ("post", "zip", "postal", "promo", "discount", "voucher"))
ERROR_WORD = rf"\b(?:error|err|fault|{_NOT_AN_ERROR}code)(?:\s+code)?\s*[:#]?\s*"
ERROR_MENTION = re.compile(rf"\b(?:error|err|fault|{_NOT_AN_ERROR}code)s?\b", re.I)  # "it shows an error": a code to ask for
# A code someone names: "error E-999", "fault code 42", "Error 0x80070005".
NAMED_CODE = re.compile(ERROR_WORD + r"(0x[0-9a-f]{4,8}|[a-z]{1,3}[-\u2013]?\d{1,4}|\d{2,4})\b", re.I)
# Screens and people write E-203, E203, E 203, E–203. Read off a photo any spelling counts; typed or said,
# only one the entry lists or one after an error word: "my Galaxy S20" is a phone, not the speaker's S-20.
SEPARATOR = r"[\s\-\u2013_.]?"
# What a shipping screenshot or label shows (until the tracker's own slots read these).
WEEKDAY = r"(?:mon|tues|wednes|thurs|fri|satur|sun)day"
MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
EXPECTED_DAY = re.compile(
    rf"\b(?:expected|estimated|arriving|arrives|delivery(?:\s+date)?|due)\b[^\n]{{0,20}}?"
    rf"\b({WEEKDAY}(?:,?\s+(?:\d{{1,2}}\s+{MONTH}|{MONTH}\s+\d{{1,2}}))?|today|tomorrow|\d{{1,2}}\s+{MONTH}|{MONTH}\s+\d{{1,2}})\b",
    re.I,
)
CARRIERS = ("UPS", "FedEx", "DHL", "USPS", "Royal Mail", "DPD", "Evri", "Hermes", "GLS", "Canada Post",
            "Australia Post", "PostNL", "TNT", "Purolator", "OnTrac", "Amazon Logistics")
CARRIER = re.compile(r"\b(" + "|".join(re.escape(c) for c in CARRIERS) + r")\b", re.I)

Embed = Callable[[list[str]], np.ndarray]  # texts -> (N, D) unit rows


@dataclass(frozen=True)
class KnowledgeEntry:
    title: str
    answer: str  # said as written; for an error code "<code> means <meaning>: <fix>"
    codes: tuple[str, ...] = ()  # spellings of one code, the first as replies write it
    questions: tuple[str, ...] = ()  # ways customers ask for it

    def texts(self) -> list[str]:
        """What a question is compared with: the title, the questions and the answer."""
        return [self.title, *self.questions, self.answer]


@dataclass(frozen=True)
class Passage:
    """Text a turn can be answered from: what was typed or said, or an earlier photo's or clip's reading."""

    text: str
    modality: str  # "text" | "audio" | "image"
    current: bool  # brought by this turn


@dataclass(frozen=True)
class Found:
    """What the knowledge base has for one turn."""

    entry: KnowledgeEntry | None
    score: float  # cosine similarity of the question to the entry; 1.0 when a code picked it
    code: str | None = None  # the entry's code, when a code picked it
    seen_in: str | None = None  # where that code was: "text" | "audio" | "image"
    current: bool = False  # the code came in this turn
    unknown_code: str | None = None  # a code this turn named that no entry knows
    code_untold: bool = False  # the turn is about an error whose code the customer has not given: ask for it


NOTHING = Found(None, 0.0)


class KnowledgeBase:
    def __init__(self, entries: Sequence[KnowledgeEntry], embed: Embed) -> None:
        """Embeds every entry's texts and ERROR_QUESTIONS now (start-up), never per turn."""
        self.entries = tuple(entries)
        self.rows = [i for i, entry in enumerate(self.entries) for _ in entry.texts()]  # row -> entry
        texts = [text for entry in self.entries for text in entry.texts()]
        vectors = np.asarray(embed(texts + list(ERROR_QUESTIONS)), dtype=np.float32)  # (R + Q, D)
        self.embeddings = vectors[: len(texts)]  # (R, D), unit rows
        self.error_questions = vectors[len(texts) :]  # (Q, D)
        self.by_code = {_key(code): (entry, entry.codes[0]) for entry in self.entries for code in entry.codes}
        self.as_listed = {_listed(code) for entry in self.entries for code in entry.codes}
        spelled = sorted({code for entry in self.entries for code in entry.codes}, key=len, reverse=True)
        alternatives = "|".join(SEPARATOR.join(map(re.escape, re.findall(r"[A-Za-z]+|\d+", c))) for c in spelled)
        self.code_pattern = re.compile(
            rf"(?<![A-Za-z0-9])(?P<named>{ERROR_WORD})?(?P<code>{alternatives})(?![A-Za-z0-9])", re.I
        ) if spelled else None

    def lookup(self, question: str, embedding: np.ndarray | None, passages: Sequence[Passage], *,
               held_code: Passage | None = None) -> Found:
        """`embedding`: (D,) unit vector of `question` (None when nothing was said); `passages`: newest first;
        `held_code`: the error code the state holds (`held_error_code`)."""
        for passage in passages:
            if passage.current and (hit := self._code_in(passage)):
                return hit
        unknown = next((code for p in passages if p.current for code in NAMED_CODE.findall(p.text)), None)
        if unknown is not None:
            return Found(None, 0.0, unknown_code=unknown.upper())
        if embedding is None or not self.entries:
            return NOTHING
        similarities = self.embeddings @ embedding  # (R,)
        best = int(np.argmax(similarities))
        entry, score = self.entries[self.rows[best]], float(similarities[best])
        about_error = float((self.error_questions @ embedding).max()) >= ERROR_QUESTION_SCORE
        if about_error and held_code is not None:
            return self._held(held_code)
        if about_error or (entry.codes and score >= MIN_ANSWER_SCORE):
            for passage in passages:
                if hit := self._code_in(passage):
                    return hit
            if entry.codes and (about_error or ERROR_MENTION.search(question)):
                if held_code is not None:  # "the printer error came back": the code the customer gave
                    return self._held(held_code)
                return Found(None, score, code_untold=True)
        return Found(entry, score) if score >= MIN_ANSWER_SCORE else Found(None, score)

    def _held(self, held_code: Passage) -> Found:
        """The entry of the code the tracker holds, or that no entry knows it."""
        return self._code_in(held_code) or Found(None, 0.0, unknown_code=held_code.text.removeprefix(HELD))

    def _code_in(self, passage: Passage) -> Found | None:
        for match in self.code_pattern.finditer(passage.text) if self.code_pattern else ():
            written = match.group("code")
            if passage.modality == "image" or match.group("named") or _listed(written) in self.as_listed:
                entry, code = self.by_code[_key(written)]
                return Found(entry, 1.0, code=code, seen_in=passage.modality, current=passage.current)
        return None


def passages(utterance: str, state: DialogueState) -> list[Passage]:
    """What a turn can be answered from, newest first: its own words, then the evidence notes
    (this turn's photos and clips first: the pipeline has already added them to the state)."""
    found = [Passage(utterance, "text", current=True)] if utterance else []
    found += [Passage(note.text, note.modality, current=note.turn == state.turns) for note in reversed(state.evidence)]
    return found


ERROR_CODE_SLOT = "error_code"  # the slot a domain keeps an error code in
HELD = "error "  # a held code is written after an error word, so that any spelling of a listed code is read


def held_error_code(state: DialogueState, slot: str = ERROR_CODE_SLOT) -> Passage | None:
    """The error code the tracker holds, as a passage from where it was read (a photo, a clip, text)."""
    if slot not in state.slots:
        return None
    source = state.slot_sources.get(slot)
    modality = source.modality if source is not None and source.modality != "action" else "text"
    return Passage(HELD + state.slots[slot], modality, current=source is not None and source.turn == state.turns)


def shown_facts(state: DialogueState) -> dict[str, str]:
    """Facts this turn's photos show that no slot holds: {"expected": "Friday", "carrier": "UPS"}."""
    facts: dict[str, str] = {}
    for note in state.evidence:
        if note.turn != state.turns or note.modality != "image":
            continue
        if "expected" not in facts and (day := EXPECTED_DAY.search(note.text)):
            facts["expected"] = day.group(1)
        if "carrier" not in facts and (carrier := CARRIER.search(note.text)):
            facts["carrier"] = next(c for c in CARRIERS if c.lower() == carrier.group(1).lower())
    return facts


def knowledge_path(domain_path: str | Path | None) -> Path | None:
    """The knowledge base of a domain file: its `knowledge:` entry, else a sibling <stem>.kb.yaml/.yml/.md."""
    source = Path(domain_path) if domain_path is not None else DEFAULT_DOMAIN_PATH
    raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    named = raw.get("knowledge") if isinstance(raw, dict) else None
    if named is not None:
        path = source.parent / str(named)  # an absolute path stays absolute
        if not path.is_file():
            raise DomainError(f"{source}: knowledge file '{named}' not found (looked for {path})")
        return path
    stem = source.name.removesuffix(source.suffix)
    return next((p for suffix in KB_SUFFIXES if (p := source.with_name(stem + suffix)).is_file()), None)


def load_knowledge(path: str | Path) -> tuple[KnowledgeEntry, ...]:
    """Entries from a .yaml/.yml file (a list under `entries`) or a .md file (one `## Title` section each)."""
    source = Path(path)
    text = source.read_text(encoding="utf-8")
    if source.suffix == ".md":
        entries = [_entry(raw, f"{source}: section '{raw['title']}'") for raw in _markdown_sections(text)]
    else:
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DomainError(f"{source}: not valid YAML: {exc}") from exc
        items = raw.get("entries") if isinstance(raw, dict) else None
        if not isinstance(items, list):
            raise DomainError(f"{source}: expected a list of entries under 'entries'")
        entries = [_entry(item, f"{source}: entry {n}") for n, item in enumerate(items, start=1)]
    seen: dict[str, str] = {}
    for entry in entries:
        for code in entry.codes:
            if (other := seen.setdefault(_key(code), entry.title)) != entry.title:
                raise DomainError(f"{source}: code {code} is in two entries ('{other}' and '{entry.title}')")
    return tuple(entries)


ENTRY_KEYS = {"title", "code", "codes", "product", "meaning", "fix", "questions", "answer"}


def _entry(raw: Any, where: str) -> KnowledgeEntry:
    """An error code (`code`/`codes`, `meaning`, `fix`, optional `product`) or a topic (`title`, `answer`)."""
    if not isinstance(raw, dict):
        raise DomainError(f"{where}: expected a mapping")
    if unknown := set(raw) - ENTRY_KEYS:
        raise DomainError(f"{where}: unknown keys {sorted(unknown)}; use {sorted(ENTRY_KEYS)}")
    codes = tuple(str(c).strip() for c in ([raw["code"]] if "code" in raw else raw.get("codes") or ()))
    questions = tuple(str(q) for q in raw.get("questions") or ())
    if codes and "answer" not in raw:  # an error code worded from its parts
        meaning, fix = _text(raw, "meaning", where), _text(raw, "fix", where)
        product = f"{raw['product']} " if raw.get("product") else ""
        title = str(raw.get("title") or f"{product}error {codes[0]}: {meaning}")
        return KnowledgeEntry(title=title, answer=f"{codes[0]} means {meaning}: {fix}", codes=codes, questions=questions)
    return KnowledgeEntry(title=_text(raw, "title", where), answer=" ".join(_text(raw, "answer", where).split()),
                          codes=codes, questions=questions)


def _text(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DomainError(f"{where}: '{key}' is missing or empty; give it a sentence of text")
    return value.strip()


MARKDOWN_FIELDS = {"code": "codes", "codes": "codes", "question": "questions", "questions": "questions"}
MARKDOWN_FIELD = re.compile(r"^(codes?|questions?)\s*:\s*(.*)$", re.I)


def _markdown_sections(text: str) -> list[dict[str, Any]]:
    """`## Title`, then optional `Codes: E-203, E203` / `Questions: a?; b?` lines, then the answer's lines."""
    sections: list[dict[str, Any]] = []
    for line in text.splitlines():
        if line.startswith("## "):
            sections.append({"title": line[3:].strip(), "answer": ""})
        elif sections and (field := MARKDOWN_FIELD.match(line.strip())):
            key = MARKDOWN_FIELDS[field.group(1).lower()]
            separator = "," if key == "codes" else ";"
            sections[-1][key] = [part.strip() for part in field.group(2).split(separator) if part.strip()]
        elif sections:
            sections[-1]["answer"] += " " + line.strip()
    return sections


def _key(code: str) -> str:
    """E-203, e203 and "E 203" are one code."""
    return re.sub(r"[^A-Z0-9]", "", code.upper())


def _listed(code: str) -> str:
    """A spelling as an entry lists it: e-203 and E–203 are E-203, but E203 is not."""
    return code.upper().replace("\u2013", "-")
