"""Training data for the reply model, generated from the domain: `build(out_dir, ...)` or
`python -m app.dialogue.dataset --out DIR`.

Simulated customers (app/dialogue/simulator.py) talk to the real tracker and policy; each assistant turn
becomes one JSONL line: the conversation so far, the customer's words and media, the decision as text
(app/dialogue/decision_text.py) and a delexicalised reply composed from the response bank, checked with
the same `grounded` the server applies. Photos are rendered and voice clips synthesised
(app/stories/media.py); featurising them is the trainer's job.

One line:
{"id": "d123-t2", "split": "train"|"heldout", "holdout": null|"phrasing"|"values"|"flow",
 "context": [{"role": "user"|"assistant", "text": "..."}] (at most 4, oldest first), "text": "...",
 "images": ["media/x.jpg"], "audio": "media/y.wav" | null, "decision": "act=respond ...",
 "values": {...}, "required": [...], "reply": "... [order_id] ...", "act": "respond",
 "intent": "order_status" | null, "slots": {...}}

Held-out dialogues (about 5% of turns) use phrasings, values or task switches no training dialogue uses.
The output sits in <out_dir>/dataset-<hash>/, the hash covering the domain, the knowledge base, the bank,
the paraphrases, GENERATOR_VERSION and the arguments: a second build with the same inputs reuses it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import time
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from app.dialogue.decision_text import DecisionText, delexicalise, describe, fill, placeholders
from app.dialogue.domain import DEFAULT_DOMAIN_PATH
from app.dialogue.knowledge import knowledge_path
from app.dialogue.policy import ActionResult, Decision, grounded
from app.dialogue.response_bank import ResponseBank, load_bank, responses_path
from app.dialogue.simulator import (
    TOOL_FACTS, Customer, Engine, Goal, Paraphrases, Understood, UserTurn, load_engine, load_paraphrases, make_goal,
    paraphrases_path,
)
from app.dialogue.state import DialogueState
from app.dialogue.user_values import value_pools
from app.stories.format import AudioSpec, ImageSpec
from app.stories.media import render_image, synthesize

GENERATOR_VERSION = 7  # bump when the generator's output changes for the same inputs
DIALOGUES = 6400  # about 3.7 turns each: over 20,000 training turns
MEDIA = 400  # photo turns, and as many voice turns
HELDOUT_SHARE = {"phrasing": 0.015, "values": 0.015, "flow": 0.012}  # of dialogues: about 5% of turns held out
MAX_TURNS = 10
CHUNK = 64  # dialogues run side by side, so their turns' sentences are embedded in one batch
CONTEXT_TURNS = 4
COMPOSE_TRIES = 4  # bank replies tried before the policy's own wording (delexicalised) is the target
WEBHOOK_SHARE = 0.25  # completed tool intents answered by a simulated client tool
FAILED_SHARE = 0.25  # of those, and of handoff webhooks, the share that fail
LINES = "turns.jsonl"


@dataclass(frozen=True)
class Sources:
    """The data the generator reads, beside the domain file."""

    domain: Path
    knowledge: Path | None
    bank: Path
    paraphrases: Path

    @classmethod
    def of(cls, domain_path: Path = DEFAULT_DOMAIN_PATH) -> Sources:
        return cls(domain_path, knowledge_path(domain_path), responses_path(domain_path), paraphrases_path(domain_path))

    def digest(self, **arguments: int) -> str:
        hashed = hashlib.sha256(f"v{GENERATOR_VERSION} {sorted(arguments.items())}".encode())
        for path in (self.domain, self.knowledge, self.bank, self.paraphrases):
            hashed.update(path.read_bytes() if path is not None else b"-")
        return hashed.hexdigest()[:16]


def build(out_dir: str | Path, *, dialogues: int = DIALOGUES, seed: int = 0, media: int = MEDIA,
          domain_path: Path = DEFAULT_DOMAIN_PATH) -> Path:
    """Generate (or reuse) the dataset; returns the JSONL file. `media`: photo turns, and as many voice
    turns, at most."""
    sources = Sources.of(domain_path)
    target = Path(out_dir) / f"dataset-{sources.digest(dialogues=dialogues, seed=seed, media=media)}"
    if (target / "stats.json").is_file():
        return target / LINES
    scratch = target.with_name(target.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    (scratch / "media").mkdir(parents=True)
    started = time.perf_counter()
    engine = load_engine(domain_path)
    bank = load_bank(engine.domain, sources.bank)
    writer = _Writer(engine, bank, load_paraphrases(sources.paraphrases), scratch, seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batches of one chunk's sentences: one thread is as fast on a shared machine
    try:
        with (scratch / LINES).open("w", encoding="utf-8") as out, tqdm(total=dialogues, desc="dialogues",
                                                                       unit="dlg") as progress:
            for first in range(0, dialogues, CHUNK):
                numbers = range(first, min(first + CHUNK, dialogues))
                for lines in writer.chunk(numbers, dialogues=dialogues, media=media):
                    out.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
                progress.update(len(numbers))
    finally:
        torch.set_num_threads(threads)
    stats = writer.stats | {"seconds": round(time.perf_counter() - started, 1), "seed": seed, "dialogues": dialogues}
    (scratch / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    scratch.rename(target)
    return target / LINES


class _Writer:
    """Runs dialogues and turns each assistant turn into a line."""

    def __init__(self, engine: Engine, bank: ResponseBank, phrases: Paraphrases, root: Path, seed: int) -> None:
        self.engine, self.bank, self.phrases, self.root, self.seed = engine, bank, phrases, root, seed
        codes = tuple(code for entry in (engine.knowledge.entries if engine.knowledge else ()) for code in entry.codes[:1])
        self.pools = value_pools(engine.domain, codes, seed)
        self.counts: dict[str, Counter[str]] = {"act": Counter(), "split": Counter(), "holdout": Counter(),
                                                "target": Counter(), "media": Counter(), "planned": Counter()}
        self.replies: set[str] = set()

    @property
    def stats(self) -> dict[str, Any]:
        return {name: dict(counter) for name, counter in self.counts.items()} | {"distinct_replies": len(self.replies)}

    def chunk(self, numbers: range, *, dialogues: int, media: int) -> list[list[dict[str, Any]]]:
        """The lines of dialogues `numbers`, run in lockstep: each turn of all of them is embedded at once."""
        running = {n: self.dialogue(n, dialogues=dialogues, media=media) for n in numbers}
        wanted: dict[int, list[str]] = {}
        done: dict[int, list[dict[str, Any]]] = {}
        for number, steps in running.items():
            self._advance(number, steps, None, wanted, done)
        while wanted:
            self.engine.prefetch([text for texts in wanted.values() for text in texts])
            for number in list(wanted):
                del wanted[number]
                self._advance(number, running[number], True, wanted, done)
        return [done[n] for n in numbers]

    @staticmethod
    def _advance(number: int, steps: Generator[list[str], bool | None, list[dict[str, Any]]], sent: bool | None,
                 wanted: dict[int, list[str]], done: dict[int, list[dict[str, Any]]]) -> None:
        try:
            wanted[number] = steps.send(sent)
        except StopIteration as finished:
            done[number] = finished.value

    def dialogue(self, number: int, *, dialogues: int, media: int,
                 ) -> Generator[list[str], bool | None, list[dict[str, Any]]]:
        """One dialogue's lines; before each turn is understood it yields the sentences to embed."""
        rng = random.Random(f"{self.seed}-{number}")
        holdout = _holdout(rng)
        pool = self.pools[1] if holdout == "values" else self.pools[0]
        every = max(1, dialogues // media) if media else 0  # media dialogues spread over the run
        with_media = bool(every) and number % every == 0
        photo = with_media and self.counts["planned"]["image"] < media
        voice = with_media and self.counts["planned"]["audio"] < media
        self.counts["planned"].update(kind for kind, wanted in (("image", photo), ("audio", voice)) if wanted)
        goal = make_goal(self.engine.domain, pool, rng, heldout=holdout, photo=photo, voice=voice)
        customer = Customer(goal, self.phrases, pool, self.engine.domain, rng)
        webhook = rng.choice(("none", "none", "ok", "ok", "down"))  # the deployment's handoff webhook
        state, decision = DialogueState(), None
        said: list[dict[str, str]] = []
        lines = []
        for turn_number in range(MAX_TURNS):
            turn = customer.next_turn(state, decision)
            if turn is None:
                break
            yield self.engine.texts_for(turn)
            understood = self.engine.understand(state, turn)
            state = understood.state
            decision = self._webhook(understood, webhook, goal, rng)
            line, shown = self._line(f"d{number}-t{turn_number}", turn, state, decision, understood.analysis.corrected,
                                     said, rng)
            line |= {"split": "heldout" if holdout else "train", "holdout": holdout}
            lines.append(line)
            said += [{"role": "user", "text": turn.words or "(sent a photo)"}, {"role": "assistant", "text": shown}]
            for key in ("act", "split"):
                self.counts[key][line[key]] += 1
            self.counts["holdout"][str(holdout)] += 1
        return lines

    def _webhook(self, understood: Understood, webhook: str, goal: Goal, rng: random.Random) -> Decision:
        """A webhook's answer where the server would get one: the handoff (once it succeeds), or a client's tool
        once a task with one is complete."""
        state, decision = understood.state, understood.decision
        if state.handed_off and not state.handoff_notified and webhook != "none":
            return self.engine.answered(understood, ActionResult(ok=webhook == "ok"))
        tool_facts = TOOL_FACTS.get(state.intent or "")
        if decision.action == "respond" and tool_facts and rng.random() < WEBHOOK_SHARE:
            if rng.random() < FAILED_SHARE:
                return self.engine.answered(understood, ActionResult(ok=False))
            facts = {name: rng.choice(options) for name, options in tool_facts.items()}
            return self.engine.answered(understood, ActionResult(ok=True, facts=facts))
        return decision

    def _line(self, key: str, turn: UserTurn, state: DialogueState, decision: Decision, corrected: tuple[str, ...],
              said: list[dict[str, str]], rng: random.Random) -> tuple[dict[str, Any], str]:
        """The JSONL line of one turn, and the reply as the customer reads it (for later turns' context)."""
        described = describe(decision, state, self.engine.domain, corrected=corrected)
        reply, source = self._target(decision, state, described, corrected, rng)
        self.counts["target"][source] += 1
        self.replies.add(reply)
        line = {
            "id": key, "context": said[-CONTEXT_TURNS:], "text": turn.words,
            "images": [self._save_image(f"{key}-{i}", spec) for i, spec in enumerate(turn.photos)],
            "audio": self._save_audio(key, turn.voice) if turn.voice is not None else None,
            "decision": described.text, "values": described.values, "required": list(described.required),
            "reply": reply, "act": described.text.split()[0].removeprefix("act="), "intent": state.intent,
            "slots": dict(state.slots),
        }
        shown = fill(reply, described.values)
        assert shown is not None  # _target checked it
        return line, shown

    def _target(self, decision: Decision, state: DialogueState, described: DecisionText, corrected: tuple[str, ...],
                rng: random.Random) -> tuple[str, str]:
        """(delexicalised reply, "bank" | "draft"): a bank reply that passes the server's checks once filled,
        else the policy's own wording with its required values as placeholders."""
        domain = self.engine.domain
        for _ in range(COMPOSE_TRIES):
            reply = self.bank.compose(decision, state, domain, described, corrected=corrected, rng=rng)
            filled = fill(reply, described.values)
            if filled is not None and grounded(filled, decision, domain):
                return reply, "bank"
        draft = delexicalise(decision.draft, {name: described.values[name] for name in described.required})
        assert set(placeholders(draft)) <= set(described.values), draft
        return draft, "draft"

    def _save_image(self, name: str, spec: ImageSpec) -> str:
        path = Path("media") / f"{name}.{'jpg' if spec.format == 'jpeg' else 'png'}"
        (self.root / path).write_bytes(render_image(spec))
        self.counts["media"]["image"] += 1
        return path.as_posix()

    def _save_audio(self, name: str, spec: AudioSpec) -> str:
        path = Path("media") / f"{name}.wav"
        (self.root / path).write_bytes(synthesize(spec))
        self.counts["media"]["audio"] += 1
        return path.as_posix()


def _holdout(rng: random.Random) -> str | None:
    draw = rng.random()
    for kind, share in HELDOUT_SHARE.items():
        if draw < share:
            return kind
        draw -= share
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.dialogue.dataset", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for dataset-<hash>/")
    parser.add_argument("--dialogues", type=int, default=DIALOGUES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--media", type=int, default=MEDIA, help="photo turns, and as many voice turns, at most")
    args = parser.parse_args(argv)
    path = build(args.out, dialogues=args.dialogues, seed=args.seed, media=args.media)
    print(path)
    print((path.parent / "stats.json").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()

