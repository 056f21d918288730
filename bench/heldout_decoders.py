"""The generated set's held-out turns written by each reply decoder as the server decodes them, side by side
(issue 15: the fused default against `PARLEY_DECODER=smollm2`).

Run from the repository root:  .venv/bin/python -m bench.heldout_decoders DATA [--every 4]
    [--decoders default,smollm2]

DATA is a set from `python -m app.dialogue.dataset` (its turns.jsonl). Every `--every`-th held-out turn goes
to each decoder, loaded by app/wiring.py's load_decoder and decoded greedily by its ContinuousDecoder, all
turns at once (the server's batching):
- the fused model reads the decision, and writes placeholders for its values, as in the pipeline;
- a causal LM reads the pipeline's prompt (SYSTEM_PROMPT with the facts and a draft, the dialogue, the turn)
  and continues the draft's opening words, with the pipeline's token budget. The set keeps no policy draft,
  so its draft is the bank's reply for the turn, filled: the causal LM is asked to reword a reply that is
  already right.
A causal LM's reply is delexicalised with the turn's values and scored as the fused one is
(app/reply_metrics.py: slot error, act accuracy, BLEU, ROUGE-L, distinct-2, wording kept). Writes
bench/results/heldout-decoders.md and .json. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from pathlib import Path

import torch

from app.config import Settings
from app.dialogue.decision_text import delexicalise, fill
from app.observability.metrics import Metrics
from app.pipeline import SYSTEM_PROMPT, draft_budget, reply_opening
from app.reply_metrics import ActOf, score, scored
from app.wiring import load_decoder, reply_tokens
from models.decoder import ReplyContext
from models.registry import resolve_placement
from models.train import Example, read_jsonl

RESULTS = Path(__file__).parent / "results"


def draft_of(example: Example) -> str:
    """The bank's reply for the turn with its values filled in: the draft a causal LM rewords here."""
    return fill(example.reply, example.values) or example.reply


def context_for(example: Example, *, delexicalised: bool) -> ReplyContext:
    """What the pipeline hands a decoder for this turn: the decision for a fused model, a prompt to reword
    the draft for a causal LM."""
    turn = [{"role": "user", "content": example.text or "(sent a photo)"}]
    if delexicalised:
        return ReplyContext(example.context + turn, decision=example.decision, values=example.values,
                            required=example.required)
    facts = "; ".join(f"{name}: {value}" for name, value in example.values.items()) or "none yet"
    system = {"role": "system", "content": SYSTEM_PROMPT.format(facts=facts, draft=draft_of(example))}
    return ReplyContext([system, *example.context, *turn], opening=reply_opening(draft_of(example)))


async def write(decoder, examples: list[Example]) -> tuple[list[str], float]:
    """Every example's reply (delexicalised), decoded together; and the seconds it took."""
    delexicalised = getattr(decoder, "grounded_by_construction", False)
    cap = reply_tokens(decoder)

    async def one(example: Example) -> str:
        context = context_for(example, delexicalised=delexicalised)
        budget = cap if delexicalised else draft_budget(draft_of(example), decoder.tokenizer, cap)
        text = "".join([piece async for piece in decoder.stream(context, max_new_tokens=budget)]).strip()
        return text if delexicalised else delexicalise(text, example.values)

    started = time.perf_counter()
    try:
        replies = await asyncio.gather(*(one(e) for e in examples))
    finally:
        await decoder.aclose()
    return list(replies), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="turns.jsonl of a generated set")
    parser.add_argument("--every", type=int, default=4, help="score every N-th held-out turn")
    parser.add_argument("--decoders", default="default,smollm2", help="PARLEY_DECODER values, comma-separated")
    parser.add_argument("--out", type=Path, default=RESULTS / "heldout-decoders")
    args = parser.parse_args()
    examples = read_jsonl(args.data)
    training = [e for e in examples if e.split != "heldout"]
    heldout = [e for e in examples if e.split == "heldout"][::args.every]
    act_of = ActOf([e.reply for e in training], [e.act or "" for e in training])
    runs = {}
    for spec in args.decoders.split(","):
        settings = Settings(decoder=spec)
        placement = resolve_placement(settings.device, cpu_dtype=settings.decoder_cpu_dtype)
        decoder = load_decoder(settings, placement, Metrics())
        replies, seconds = asyncio.run(write(decoder, heldout))
        results = scored(replies, heldout)
        runs[spec] = {"placement": placement.describe(), "seconds": round(seconds, 1),
                      "metrics": score(results, act_of),
                      "examples": [{"id": e.id, "act": e.act, "reply": r, "reference": e.reply}
                                   for e, r in list(zip(heldout, replies, strict=True))[:30]]}
        print(spec, json.dumps(runs[spec]["metrics"]), flush=True)
    report = {"data": str(args.data), "turns": len(heldout), "machine": platform.machine(),
              "threads": torch.get_num_threads(), "runs": runs}
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    args.out.with_suffix(".md").write_text(markdown(report))


def markdown(report: dict) -> str:
    rows = "\n".join(
        f"| {spec} | {run['placement']} | {m['slot_error_rate']:.2%} ({m['missing']} / {m['wrong']} / {m['invented']}"
        f" of {m['required']}) | {m['act_accuracy']:.2%} | {m['bleu']:.1f} | {m['rouge_l']:.3f} | {m['distinct_2']:.3f}"
        f" | {m['kept']:.2%} | {run['seconds']:.0f} s |"
        for spec, run in report["runs"].items() for m in [run["metrics"]])
    return f"""# Held-out replies by decoder (`python -m bench.heldout_decoders`)

Data: `{report['data']}`, {report['turns']} held-out turns (new in phrasing, slot values or dialogue flow), each
decoder greedy through its ContinuousDecoder, all turns at once; {report['machine']}, {report['threads']} threads.
A causal LM rewords the bank's (filled) reply as its draft; its reply is delexicalised with the turn's values.

| PARLEY_DECODER | runs as | slot error (missing / wrong / invented of required) | act accuracy | BLEU | ROUGE-L | distinct-2 | wording kept | time |
|---|---|---|---|---|---|---|---|---|
{rows}

Slot error = (missing + wrong + invented) / required facts; kept = the reply states every required fact,
names none the decision lacks and passes the acceptance check (the server would send it; the rest get the
policy's wording).
"""


if __name__ == "__main__":
    main()
