"""The default decoder on CPU in float32, bfloat16 and int8 (dynamic quantization): speed and reply quality.

Run from the repository root:  .venv/bin/python -m bench.quantization
Speed: prefill of a 200-token prompt and one decoding step at batch 1 and 16. Quality: on grounded
customer-service prompts built by Parley's own policy, how often the model's wording passes the
grounding check (keeps every fact, invents none), and how often it is word for word the float32 reply.
Writes bench/results/quantization.md and .json. Not a test: nothing here asserts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from app.dialogue.domain import load_domain
from app.dialogue.policy import Decision, grounded
from app.dialogue.state import DialogueState
from app.pipeline import reply_prompt
from models.decoder import CausalLMDecoder, TextStream
from models.registry import default_decoder, resolve_placement

RESULTS = Path(__file__).parent / "results"
DTYPES = ("float32", "bfloat16", "int8")
MAX_NEW_TOKENS = 64
# (what the policy decided, its facts, the user's words): the kinds of reply Parley asks the model to phrase.
# acted=True: the draft states what a webhook (an action, the handoff) did in that turn.
CASES = [
    (Decision("respond", "I'm sorry your lamp arrived damaged. I've opened a replacement for order A7Q-4412.",
              {"order_id": "A7Q-4412", "product": "lamp"}, required=("A7Q-4412",), acted=True), "It's A7Q-4412"),
    (Decision("recall", "Your order number is A7Q-4412.", {"order_id": "A7Q-4412"}, required=("A7Q-4412",)),
     "What was my order number?"),
    (Decision("ask_slot", "What is your order number?", {"product": "headphones"},
              names_one_of=("order number", "order")), "I want a refund for my headphones"),
    (Decision("respond", "Your refund of $37.50 for order 4512 is on its way.",
              {"order_id": "4512", "amount": "$37.50"}, required=("4512", "$37.50"), acted=True),
     "When do I get my money back?"),
    (Decision("ask_slot", "What email address is on the account?", {"order_id": "KX-90817"},
              names_one_of=("email",)), "I was charged twice for KX-90817"),
    (Decision("respond", "Order KX-90817 is shipped and should arrive Friday.",
              {"order_id": "KX-90817", "order_status": "shipped"}, required=("KX-90817", "shipped")),
     "Where is my parcel?"),
    (Decision("handoff", "I'm passing you to a colleague who will answer shortly.", {},
              names_one_of=("colleague", "agent", "person"), acted=True), "Let me talk to a human"),
    (Decision("acknowledge", "Thanks, I've noted your order number A7Q-4412. How can I help you with it?",
              {"order_id": "A7Q-4412"}, required=("A7Q-4412",)), "(sent a photo)"),
]


def timed(fn, repeat: int = 3) -> float:
    fn()  # warm-up
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - started) / repeat


def measure_speed(decoder: CausalLMDecoder, prompt: list[int]) -> dict[str, float]:
    batch16 = decoder.prefill([prompt] * 16)
    speed = {
        "prefill_200_ms": timed(lambda: decoder.prefill([prompt])) * 1000,
        "step_b1_ms": timed(lambda: decoder.step(decoder.prefill([prompt]))) * 1000,
        "step_b16_ms": timed(lambda: decoder.step(batch16)) * 1000,
    }
    speed["step_b1_ms"] -= speed["prefill_200_ms"]  # the step alone
    return speed


def reply(decoder: CausalLMDecoder, prompt: list[int]) -> str:
    batch, text, pieces = decoder.prefill([prompt]), TextStream(decoder.tokenizer), []
    while len(pieces) < MAX_NEW_TOKENS and batch.next_ids.item() not in decoder.stop_ids:
        pieces.append(text.push(batch.next_ids.item()))
        batch = decoder.step(batch)
    return "".join(pieces).strip()


def main() -> None:
    domain = load_domain()
    source = str(default_decoder(Path.home() / ".cache" / "parley" / "models"))
    messages = [reply_prompt(decision, DialogueState(slots=decision.facts), [], said) for decision, said in CASES]
    long_prompt = [{"role": "user", "content": "My lamp arrived broken and I would like a replacement. " * 18}]
    rows, replies = {}, {}
    for name in DTYPES:
        decoder = CausalLMDecoder.load(source, placement=resolve_placement("cpu", cpu_dtype=name), offline=True)
        speed = measure_speed(decoder, decoder.prompt_ids(long_prompt)[:200])
        replies[name] = [reply(decoder, decoder.prompt_ids(m)) for m in messages]
        ok = [grounded(r, decision, domain) for r, (decision, _) in zip(replies[name], CASES, strict=True)]
        same = [r == f for r, f in zip(replies[name], replies["float32"], strict=True)]
        rows[name] = {**speed, "grounded": sum(ok) / len(ok), "same_as_float32": sum(same) / len(same)}
        print(name, {k: round(v, 3) for k, v in rows[name].items()}, flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quantization.json").write_text(json.dumps({"speed_and_quality": rows, "replies": replies}, indent=2))
    lines = ["# Decoder dtype on CPU: speed and reply quality", "",
             f"SmolLM2-135M-Instruct, torch {torch.__version__}, {torch.get_num_threads()} threads; "
             f"{len(CASES)} grounded prompts built by Parley's policy, greedy, up to {MAX_NEW_TOKENS} tokens.", "",
             "| dtype | prefill 200 tok ms | step b=1 ms | step b=16 ms | grounded | same words as float32 |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {n} | {r['prefill_200_ms']:.0f} | {r['step_b1_ms']:.1f} | {r['step_b16_ms']:.1f} | "
              f"{r['grounded']:.0%} | {r['same_as_float32']:.0%} |" for n, r in rows.items()]
    (RESULTS / "quantization.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'quantization.md'}")


if __name__ == "__main__":
    main()
