"""`parley eval`: drive a running Parley server with a JSONL dialogue set and score what it answers.

Whatever decoder the server was started with is what gets measured (prompt fusion by default, or
PARLEY_DECODER=fused:<dir>). For each example: a new session, the context's user turns sent as text,
then the example's turn with its text, images and audio as multipart; the final reply and state are
scored against the example's reply, intent and slots (models/train.py documents the JSONL format).

Metrics: BLEU (sacrebleu) and ROUGE-L F1 (rouge-score) of the replies, intent accuracy, slot
precision/recall/F1 (micro, over (slot, value) pairs, values compared case-insensitively), how often the
model's own wording passed the server's fact check (`grounded`), and turn latency, overall and per
modality mix of the scored turn. Writes OUT.md and OUT.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from models.train import Example, read_jsonl

TIMEOUT_S = 300  # a first turn may wait for a cold model
MAX_RETRIES = 5  # on 409/429/503 with Retry-After


@dataclass(frozen=True)
class Outcome:
    id: str
    modalities: str  # e.g. "text+image"
    reply: str
    reference: str
    intent: str | None
    expected_intent: str | None
    slots: dict[str, str]
    expected_slots: dict[str, str]
    grounded: bool
    latency_ms: float  # wall time of the scored turn, as the client saw it


class Client:
    def __init__(self, base_url: str, api_key: str | None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=TIMEOUT_S)

    def call(self, method: str, path: str, **kwargs) -> dict:
        for _ in range(MAX_RETRIES):
            response = self.http.request(method, path, **kwargs)
            if response.status_code in (409, 429, 503) and "retry-after" in response.headers:
                time.sleep(float(response.headers["retry-after"]))
                continue
            if response.status_code >= 400:
                raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
            return response.json() if response.content else {}
        raise RuntimeError(f"{method} {path}: still busy after {MAX_RETRIES} tries")

    def decoder(self) -> str:
        models = self.http.get("/readyz").json().get("models", [])
        return next((m["source"] for m in models if m["name"] == "decoder"), "unknown")


def run_example(client: Client, example: Example) -> Outcome:
    session = client.call("POST", "/v1/sessions")["id"]
    turns = f"/v1/sessions/{session}/turns"
    for turn in example.context:
        if turn["role"] == "user" and turn["content"].strip():
            client.call("POST", turns, json={"text": turn["content"]})
    files = [("image", (p.name, p.read_bytes())) for p in example.images]
    if example.audio is not None:
        files.append(("audio", (example.audio.name, example.audio.read_bytes())))
    started = time.perf_counter()
    body = client.call("POST", turns, data={"text": example.text} if example.text else {}, files=files or None)
    latency = (time.perf_counter() - started) * 1000
    client.call("DELETE", f"/v1/sessions/{session}")  # leave nothing behind on the server
    state = body["state"]
    return Outcome(
        id=example.id, modalities="+".join(example.modalities), reply=body["reply"], reference=example.reply,
        intent=state.get("intent"), expected_intent=example.intent,
        slots={k: str(v) for k, v in (state.get("slots") or {}).items() if v is not None},
        expected_slots=example.slots, grounded=bool(body.get("grounded")), latency_ms=round(latency, 1),
    )


def score(outcomes: list[Outcome]) -> dict:
    """The metrics of a group of outcomes (see the module docstring)."""
    import sacrebleu
    from rouge_score import rouge_scorer

    replies, references = [o.reply for o in outcomes], [o.reference for o in outcomes]
    rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    with_intent = [o for o in outcomes if o.expected_intent]
    found = {(o.id, k, v.lower()) for o in outcomes for k, v in o.slots.items()}
    wanted = {(o.id, k, str(v).lower()) for o in outcomes for k, v in o.expected_slots.items()}
    hits = len(found & wanted)
    precision = hits / len(found) if found else 1.0
    recall = hits / len(wanted) if wanted else 1.0
    latencies = sorted(o.latency_ms for o in outcomes)
    return {
        "n": len(outcomes),
        "bleu": round(sacrebleu.corpus_bleu(replies, [references]).score, 2),
        "rouge_l": round(statistics.mean(rouge.score(r, h)["rougeL"].fmeasure for r, h in zip(
            references, replies, strict=True)), 4),
        "intent_accuracy": round(statistics.mean(o.intent == o.expected_intent for o in with_intent), 4)
        if with_intent else None,
        "slot_precision": round(precision, 4), "slot_recall": round(recall, 4),
        "slot_f1": round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0,
        "grounded_rate": round(statistics.mean(o.grounded for o in outcomes), 4),
        "latency_ms_p50": round(statistics.median(latencies), 1),
        "latency_ms_p95": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 1),
    }


def report(outcomes: list[Outcome], *, decoder: str, base_url: str, data: Path, note: str = "") -> dict:
    groups = sorted({o.modalities for o in outcomes})
    return {
        "server": base_url, "decoder": decoder, "data": str(data), "note": note,
        "overall": score(outcomes),
        "by_modality": {g: score([o for o in outcomes if o.modalities == g]) for g in groups},
        "examples": [asdict(o) for o in outcomes],
    }


COLUMNS = [("n", "n"), ("bleu", "BLEU"), ("rouge_l", "ROUGE-L"), ("intent_accuracy", "intent acc"),
           ("slot_precision", "slot P"), ("slot_recall", "slot R"), ("slot_f1", "slot F1"),
           ("grounded_rate", "model wording kept"), ("latency_ms_p50", "p50 ms"), ("latency_ms_p95", "p95 ms")]


def markdown(result: dict) -> str:
    lines = [f"# parley eval: {result['decoder']}", "",
             f"Server {result['server']}, data `{result['data']}`, {result['overall']['n']} scored turns.", "",
             *([result["note"], ""] if result.get("note") else []),
             "| turn | " + " | ".join(title for _, title in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    rows = [("all", result["overall"])] + list(result["by_modality"].items())
    for name, metrics in rows:
        lines.append(f"| {name} | " + " | ".join("-" if metrics[k] is None else str(metrics[k]) for k, _ in COLUMNS)
                     + " |")
    lines += ["", "| id | modalities | intent (expected) | reply |", "|---|---|---|---|"]
    for o in result["examples"]:
        reply = o["reply"].replace("|", "/").replace("\n", " ")
        lines.append(f"| {o['id']} | {o['modalities']} | {o['intent']} ({o['expected_intent']}) | {reply} |")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="JSONL dialogue set (the format `parley train` reads)")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="a running Parley server")
    parser.add_argument("--api-key", help="when the server has PARLEY_API_KEYS")
    parser.add_argument("--out", type=Path, required=True, help="report path without extension: OUT.md, OUT.json")
    parser.add_argument("--note", default="", help="a paragraph to put at the top of the report")


def run(args: argparse.Namespace) -> None:
    examples = read_jsonl(args.data)
    client = Client(args.base_url, args.api_key)
    decoder = client.decoder()
    outcomes = []
    for i, example in enumerate(examples, start=1):
        outcomes.append(run_example(client, example))
        print(f"[{i}/{len(examples)}] {example.id}: {outcomes[-1].reply[:70]!r}", flush=True)
    result = report(outcomes, decoder=decoder, base_url=args.base_url, data=args.data, note=args.note)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    args.out.with_suffix(".md").write_text(markdown(result))
    print(json.dumps(result["overall"]))
    print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}")
