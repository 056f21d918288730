"""Intent accuracy of the dialogue tracker on the evaluation dialogues of bench/make_dataset.py.

Run from the repository root:  .venv/bin/python -m bench.intents
Each dialogue runs through the tracker and the policy as the server runs them, with the real MiniLM
encoder: typed text as typed, speech as its perfect transcript, photos as their text lines (OCR
without misreadings), so that what is measured is the tracker, not the encoders (bench/accuracy.py
measures those). Scored like `parley eval`: the state's intent after each turn against the expected
one; "intent or act" also counts a turn whose act is the expected one (ask_recall leaves the task's
intent in the state). Writes bench/results/intents.md/json.
"""

import json
from pathlib import Path

from app.dialogue.domain import load_domain
from app.dialogue.policy import decide
from app.dialogue.sentiment import SentimentAnalyzer
from app.dialogue.state import DialogueState
from app.dialogue.tracker import DialogueTracker, Evidence
from app.wiring import _intent_classifier
from bench.make_dataset import DIALOGUES, Turn
from models.registry import default_text_model, resolve_placement
from models.text import TextEncoder

RESULTS = Path(__file__).parent / "results"


def evidence(turn: Turn) -> tuple[Evidence, ...]:
    pieces = [Evidence(turn.text, "text")] if turn.text else []
    pieces += [Evidence(turn.say, "audio")] if turn.say else []
    return tuple(pieces + ([Evidence("\n".join(turn.photo), "image")] if turn.photo else []))


def main() -> None:
    encoder = TextEncoder.load(str(default_text_model()), placement=resolve_placement("cpu"), offline=True)
    domain = load_domain()
    tracker = DialogueTracker(domain, _intent_classifier(domain, encoder), SentimentAnalyzer())
    rows = []
    for d, dialogue in enumerate(DIALOGUES, start=1):
        state = DialogueState()
        for t, turn in enumerate(dialogue, start=1):
            utterance = " ".join(part for part in (turn.text, turn.say) if part)
            texts = tracker.texts_to_embed(utterance)
            vectors = encoder.predict_batch(texts) if texts else []
            state, analysis = tracker.update(state, tracker.turn_input(evidence(turn), utterance, vectors))
            state.requested_slot = decide(state, analysis, domain).requested_slot
            rows.append({"id": f"d{d:02d}-t{t}", "said": utterance, "expected": turn.intent, "intent": state.intent,
                         "act": analysis.act})
    n = len(rows)
    summary = {"turns": n, "intent_accuracy": round(sum(r["intent"] == r["expected"] for r in rows) / n, 3),
               "intent_or_act_accuracy": round(sum(r["expected"] in (r["intent"], r["act"]) for r in rows) / n, 3)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "intents.json").write_text(json.dumps({"summary": summary, "turns": rows}, indent=2))
    misses = [r for r in rows if r["intent"] != r["expected"]]
    (RESULTS / "intents.md").write_text(
        "# Tracker intent accuracy on the evaluation dialogues\n\n"
        f"{summary}\n\n## Misses\n\n"
        + "".join(f"- {r['id']} {r['said']!r}: {r['intent']} (act {r['act']}), expected {r['expected']}\n"
                  for r in misses)
    )
    print(summary)


if __name__ == "__main__":
    main()
