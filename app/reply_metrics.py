"""How good delexicalised replies are, against the response bank's replies for the same decisions.

- slot error rate, as in the E2E NLG and MultiWOZ work: (missing + wrong + invented) / required, where
  missing = a required placeholder the reply leaves out, invented = a placeholder the decision has no value
  for, wrong = a required value absent from the filled reply although its placeholder was used (zero when
  fill works: the values are copied, never written by the model);
- act accuracy: the act of the nearest reference reply (bag-of-words cosine over the training replies)
  is the example's act;
- BLEU (sacrebleu) and ROUGE-L F1 (rouge-score) against the bank reply, distinct-2 for variety;
- kept: the share of replies that fill, state every required fact and pass the acceptance check (no action
  claimed that did not run, no refusal...), which the server sends as written (the rest fall back to the
  policy's wording).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from app.dialogue.acceptance import objection
from app.dialogue.decision_text import acted_in, fill, missing, placeholders

if TYPE_CHECKING:
    from models.train import Example

WORD = re.compile(r"\[[a-z0-9_]+\]|\w+")  # a placeholder counts as one word


@dataclass(frozen=True)
class Scored:
    """One example: what was asked for and what the model wrote (delexicalised)."""

    reply: str
    reference: str
    act: str | None
    values: dict[str, str]
    required: tuple[str, ...]
    acted: bool = False  # the turn's action ran: the reply may say it was done


def scored(replies: Sequence[str], examples: Sequence[Example]) -> list[Scored]:
    """Each reply beside what its example asked for."""
    return [Scored(r, e.reply, e.act, e.values, e.required, acted_in(e.decision))
            for r, e in zip(replies, examples, strict=True)]


def slot_errors(reply: str, values: dict[str, str], required: Sequence[str]) -> tuple[int, int, int]:
    """(missing, wrong, invented) of one delexicalised reply."""
    left_out = missing(reply, tuple(required))
    invented = [name for name in placeholders(reply) if name not in values]
    filled = fill(reply, values)
    wrong = 0 if filled is None else sum(1 for name in required if name not in left_out and values[name] not in filled)
    return len(left_out), wrong, len(invented)


def kept(reply: str, values: dict[str, str], required: Sequence[str], *, acted: bool = False) -> bool:
    """The reply can be filled, states every required fact and may be read (no action claimed that did not
    run, no refusal...): the server sends the model's wording."""
    filled = fill(reply, values)
    return (bool(reply.strip()) and filled is not None and not missing(reply, tuple(required))
            and objection(filled, acted=acted) is None)


def distinct_2(replies: Sequence[str]) -> float:
    """Distinct bigrams over all bigrams of the replies (Li et al. 2016)."""
    bigrams = [tuple(words[i:i + 2]) for r in replies for words in [WORD.findall(r.lower())]
               for i in range(len(words) - 1)]
    return len(set(bigrams)) / len(bigrams) if bigrams else 0.0


class ActOf:
    """The act of the nearest reference reply, by cosine similarity of word counts."""

    def __init__(self, replies: Sequence[str], acts: Sequence[str]) -> None:
        pairs = sorted(set(zip(replies, acts, strict=True)))
        self.acts = [act for _, act in pairs]
        self.vocabulary: dict[str, int] = {}
        for reply, _ in pairs:
            for word in WORD.findall(reply.lower()):
                self.vocabulary.setdefault(word, len(self.vocabulary))
        self.references = self._vectors([reply for reply, _ in pairs])  # (R, W)

    def _vectors(self, texts: Sequence[str]) -> np.ndarray:
        rows = np.zeros((len(texts), len(self.vocabulary)), dtype=np.float32)
        for i, text in enumerate(texts):
            for word, count in Counter(WORD.findall(text.lower())).items():
                if (column := self.vocabulary.get(word)) is not None:
                    rows[i, column] = count
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)

    def __call__(self, replies: Sequence[str]) -> list[str]:
        similarity = self._vectors(replies) @ self.references.T  # (N, R)
        return [self.acts[i] for i in similarity.argmax(1)]


def score(examples: Sequence[Scored], act_of: ActOf) -> dict[str, float]:
    """The metrics above over `examples`, rounded for a report."""
    import sacrebleu
    from rouge_score import rouge_scorer

    replies, references = [e.reply for e in examples], [e.reference for e in examples]
    errors = np.array([slot_errors(e.reply, e.values, e.required) for e in examples]).reshape(-1, 3)
    required = sum(len(e.required) for e in examples)
    acts = act_of(replies)
    with_act = [(a, e.act) for a, e in zip(acts, examples, strict=True) if e.act is not None]
    rouge = rouge_scorer.RougeScorer(["rougeL"])
    return {
        "n": len(examples),
        "slot_error_rate": round(float(errors.sum()) / max(1, required), 4),
        "missing": int(errors[:, 0].sum()), "wrong": int(errors[:, 1].sum()), "invented": int(errors[:, 2].sum()),
        "required": required,
        "act_accuracy": round(float(np.mean([a == b for a, b in with_act])), 4) if with_act else float("nan"),
        "bleu": round(sacrebleu.corpus_bleu(replies, [references]).score, 2),
        "rouge_l": round(float(np.mean([rouge.score(ref, hyp)["rougeL"].fmeasure
                                        for hyp, ref in zip(replies, references, strict=True)])), 4),
        "distinct_2": round(distinct_2(replies), 4),
        "kept": round(float(np.mean([kept(e.reply, e.values, e.required, acted=e.acted) for e in examples])), 4),
    }
