"""Throughput of Parley against a naive one-request-at-a-time pipeline of the same models, in one run.

Run from the repository root:  .venv/bin/python -m bench.throughput [--workload mix|long] [--quick]
    [--levels 1,4,16,32] [--device cpu] [--decoder <PARLEY_DECODER>]

Workloads: `mix` is scripted text, voice and image conversations (mostly short replies); `long` is every
session sending LONG_TURN, whose reply is a 40-60-token confirmation. `--quick` is a smoke test: 1 and 4
sessions, one turn each, text only.

1. Baseline, no server: the default models called one turn at a time with plain transformers
   (`generate`), faster-whisper (`transcribe`) and rapidocr, and Parley's own tracker, policy and
   prompt (cheap CPU work), so both sides write replies to the same prompts. Measured twice: with
   the decoder in float32 (what plain transformers gives by default) and in the dtype Parley's
   decoder runs in here.
2. Parley through HTTP (a real `parley serve`, the local Redis): 1, 4, 16 and 32 concurrent sessions,
   each sending scripted customer-service turns one after another, streamed (SSE), for text,
   voice and image turns.

Reports turns/s, p50/p95 latency, time to first token, decoder tokens/s, peak server memory and the
Redis share of turn time (lock + load + commit in the server's timings), and writes bench/RESULTS.md
and bench/results/throughput-<workload>.json/.md (a full run also rewrites bench/RESULTS.md). Before the server
runs, the per-token cost at batch 1 of plain `generate` and of Parley's decoder on LONG_TURN's prompt, in this
process, token for token the same greedy reply. Not a test: nothing here asserts.
"""

from __future__ import annotations

import os

# The same OpenMP wait policy as `parley serve` sets (app/cli/main.py), for the baseline in this process too: without
# it, plain generate runs ~1.5x slower once faster-whisper has run, and the comparison would flatter Parley.
os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")

import argparse
import asyncio
import base64
import io
import json
import platform
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil
import redis
import torch
from PIL import Image

from app.batching import ContinuousDecoder
from app.dialogue.domain import load_domain
from app.dialogue.policy import decide
from app.dialogue.sentiment import SentimentAnalyzer
from app.dialogue.state import DialogueState
from app.dialogue.tracker import DialogueTracker, Evidence, IntentClassifier
from app.media.audio import decode_audio
from app.pipeline import draft_budget, reply_opening, reply_prompt
from app.wiring import CAUSAL_REPLY_TOKENS
from models.decoder import CausalLMDecoder, GenerationStats, Messages, ReplyContext, chat_prompt_ids
from models.registry import (DEFAULT, SMOLLM2, default_decoder, default_speech_model, default_text_model,
                             resolve_placement, resolve_source)
from tests.samples import document, encoded, photo_of, speech_wav
from tests.server import parley_server

RESULTS = Path(__file__).parent / "results"
REDIS_URL = "redis://127.0.0.1:6379/0"
MAX_NEW_TOKENS = CAUSAL_REPLY_TOKENS  # the server's default cap on a causal LM's reply
REDIS_STEPS = ("lock", "load", "commit")
KINDS = ("text", "voice", "image")
LONG_TURN = "My headphones arrived broken, order 4512. What can I do?"  # answered with a long confirmation


# --- the scripted turns -------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    text: str = ""
    image: bytes | None = None  # JPEG
    audio: bytes | None = None  # WAV

    def json(self) -> dict:
        body: dict = {"text": self.text} if self.text else {}
        if self.image:
            body["images"] = [{"data": base64.b64encode(self.image).decode()}]
        if self.audio:
            body["audio"] = {"data": base64.b64encode(self.audio).decode()}
        return body


def scripts() -> dict[str, list[Turn]]:
    """Per kind, the turns one session sends in order (a session repeats its script if it needs more)."""
    receipt = encoded(photo_of(document(["ACME STORE", "Order No: A7Q-4412", "Total: $37.50"])), "JPEG", quality=85)
    label = encoded(photo_of(document(["SHIP TO: J. DOE", "Order KX-90817", "Return label"]), degrees=-5),
                    "JPEG", quality=85)
    return {
        "text": [Turn("My lamp arrived broken"), Turn("It's A7Q-4412"), Turn("What was my order number?")],
        "voice": [Turn(audio=speech_wav("I want a refund for my headphones")),
                  Turn(audio=speech_wav("my order number is four five one two")),
                  Turn(audio=speech_wav("what was my order number"))],
        "long": [Turn(LONG_TURN)],
        "image": [Turn("My lamp arrived broken, here is the receipt", image=receipt),
                  Turn("and this is the return label", image=label),
                  Turn("What was my order number?")],
    }


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


# --- the naive baseline -------------------------------------------------------------------


class Baseline:
    """The default models, plainly, one call at a time: no server, no batching, no streaming."""

    def __init__(self, device: str, decoder_dtype: torch.dtype) -> None:
        from faster_whisper import WhisperModel
        from rapidocr_onnxruntime import RapidOCR
        from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

        self.device = torch.device(device)
        cache = Path.home() / ".cache" / "parley" / "models"
        self.embed_tokenizer = AutoTokenizer.from_pretrained(default_text_model())
        self.embedder = AutoModel.from_pretrained(default_text_model(), dtype=torch.float32).to(self.device).eval()
        self.lm_tokenizer = AutoTokenizer.from_pretrained(default_decoder(cache))
        self.lm = AutoModelForCausalLM.from_pretrained(default_decoder(cache), dtype=decoder_dtype).to(self.device).eval()
        self.whisper = WhisperModel(str(default_speech_model(cache)), device=device,
                                    compute_type="float16" if device == "cuda" else "int8")
        self.ocr = RapidOCR()
        self.domain = load_domain()
        names = [n for n, intent in self.domain.intents.items() for _ in intent.examples]
        examples = [t for intent in self.domain.intents.values() for t in intent.examples]
        self.tracker = DialogueTracker(self.domain, IntentClassifier(names, self.embed(examples)), SentimentAnalyzer())

    @torch.inference_mode()
    def embed(self, texts: list[str]) -> np.ndarray:
        batch = self.embed_tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        batch = batch.to(self.device)
        hidden = self.embedder(**batch).last_hidden_state  # (N, T, D)
        mask = batch["attention_mask"].unsqueeze(-1).float()  # (N, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()

    @torch.inference_mode()
    def turn(self, state: DialogueState, history: list[dict], turn: Turn) -> tuple[DialogueState, str, int]:
        """-> (new state, reply, reply tokens)."""
        new, messages, draft = self.prompt(state, history, turn)
        opening = reply_opening(draft)
        ids = torch.tensor([chat_prompt_ids(self.lm_tokenizer, messages, opening)], device=self.device)
        budget = draft_budget(draft, self.lm_tokenizer, MAX_NEW_TOKENS)  # the server's budget for this reply
        out = self.lm.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=budget,
                               do_sample=False, pad_token_id=self.lm_tokenizer.pad_token_id)
        reply_ids = out[0, ids.shape[1]:]
        return new, opening + self.lm_tokenizer.decode(reply_ids, skip_special_tokens=True), len(reply_ids)

    def prompt(self, state: DialogueState, history: list[dict], turn: Turn) -> tuple[DialogueState, Messages, str]:
        """The turn perceived, tracked and decided: -> (new state, the reply's prompt, the policy's draft)."""
        evidence = [Evidence(turn.text, "text")] if turn.text else []
        heard = ""
        if turn.audio:
            clip = decode_audio(turn.audio, max_seconds=60, max_bytes=10_000_000)
            segments, _ = self.whisper.transcribe(clip, language="en", beam_size=1)
            heard = " ".join(s.text.strip() for s in segments)
            evidence.append(Evidence(heard, "audio"))
        if turn.image:
            image = np.asarray(Image.open(io.BytesIO(turn.image)).convert("RGB"))[:, :, ::-1]  # BGR for rapidocr
            lines, _ = self.ocr(image)
            evidence.append(Evidence("\n".join(text for _, text, _ in lines or []), "image"))
        utterance = " ".join(p for p in (turn.text, heard) if p)
        texts = self.tracker.texts_to_embed(utterance)  # the same work as the server: the utterance and its clauses
        vectors = self.embed(texts) if texts else []
        new, analysis = self.tracker.update(state, self.tracker.turn_input(tuple(evidence), utterance, vectors))
        decision = decide(new, analysis, self.domain)
        new.requested_slot = decision.requested_slot
        return new, reply_prompt(decision, new, history, utterance), decision.draft


def run_baseline(baseline: Baseline, script: list[Turn], turns: int) -> dict:
    latencies, tokens = [], 0
    state, history = DialogueState(), []
    for i in range(turns):
        turn = script[i % len(script)]
        if i % len(script) == 0:
            state, history = DialogueState(), []
        started = time.perf_counter()
        state, reply, n = baseline.turn(state, history, turn)
        latencies.append(time.perf_counter() - started)
        tokens += n
        history += [{"role": "user", "text": turn.text}, {"role": "assistant", "text": reply}]
    wall = sum(latencies)
    return {"turns": turns, "turns_per_s": turns / wall, "p50_ms": percentile(latencies, 50) * 1000,
            "p95_ms": percentile(latencies, 95) * 1000, "decoder_tokens_per_s": tokens / wall}


def per_token_cost(baseline: Baseline, decoder: str, device: str, *, runs: int) -> dict:
    """ms per reply token at batch 1 on LONG_TURN's prompt, prefill included: plain `generate` of the baseline's
    model, and Parley's decoder (`decoder`, in its own placement) through ContinuousDecoder as the server runs it
    (no early stop: that is the pipeline's). Runs alternate; the medians are reported."""
    _, messages, draft = baseline.prompt(DialogueState(), [], Turn(LONG_TURN))
    opening = reply_opening(draft)
    ids = torch.tensor([chat_prompt_ids(baseline.lm_tokenizer, messages, opening)], device=baseline.device)
    source = resolve_source(decoder, default=lambda: default_decoder(Path.home() / ".cache" / "parley" / "models"))
    placement = resolve_placement(device, cpu_dtype="auto")
    parley = ContinuousDecoder(CausalLMDecoder.load(source, placement=placement, offline=True), max_batch_size=1)

    def plain() -> tuple[float, str]:
        started = time.perf_counter()
        with torch.inference_mode():
            out = baseline.lm.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW_TOKENS,
                                       do_sample=False, pad_token_id=baseline.lm_tokenizer.pad_token_id)
        reply = out[0, ids.shape[1]:]
        return (time.perf_counter() - started) * 1000 / len(reply), opening + baseline.lm_tokenizer.decode(
            reply, skip_special_tokens=True)

    async def ours(prompt: Messages) -> tuple[float, str]:
        stats, started = GenerationStats(), time.perf_counter()
        text = "".join([p async for p in parley.stream(ReplyContext(prompt, opening=opening),
                                                        max_new_tokens=MAX_NEW_TOKENS, stats=stats)])
        return (time.perf_counter() - started) * 1000 / max(stats.completion_tokens, 1), text

    async def measure() -> dict:
        await ours(messages)  # warm-up: the decoding thread's first pass
        plain_ms, ours_ms, replies = [], [], set()
        for _ in range(runs):
            for times, (ms, text) in ((plain_ms, plain()), (ours_ms, await ours(messages))):
                times.append(ms)
                replies.add(text.strip())
        await parley.aclose()
        return {"plain_ms_per_token": statistics.median(plain_ms), "parley_ms_per_token": statistics.median(ours_ms),
                "speedup": statistics.median(plain_ms) / statistics.median(ours_ms), "same_reply": len(replies) == 1,
                "parley_dtype": placement.describe(), "reply": replies.pop()}

    return asyncio.run(measure())


# --- Parley through HTTP ------------------------------------------------------------------


@dataclass
class Observed:
    latency_s: list[float] = field(default_factory=list)
    first_token_s: list[float] = field(default_factory=list)
    redis_ms: float = 0.0
    total_ms: float = 0.0
    tokens: int = 0
    errors: int = 0


async def one_session(http: httpx.AsyncClient, script: list[Turn], turns: int, seen: Observed) -> None:
    session = (await http.post("/v1/sessions")).json()["id"]
    for i in range(turns):
        started = time.perf_counter()
        first, done = None, None
        async with http.stream("POST", f"/v1/sessions/{session}/turns?stream=true",
                               json=script[i % len(script)].json()) as response:
            if response.status_code != 200:
                seen.errors += 1
                continue
            event = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                    if event == "token" and first is None:
                        first = time.perf_counter() - started
                elif line.startswith("data: ") and event == "done":
                    done = json.loads(line.removeprefix("data: "))
        if done is None:
            seen.errors += 1
            continue
        seen.latency_s.append(time.perf_counter() - started)
        seen.first_token_s.append(first if first is not None else seen.latency_s[-1])
        seen.redis_ms += sum(done["timings_ms"].get(step, 0.0) for step in REDIS_STEPS)
        seen.total_ms += done["timings_ms"]["total"]
        seen.tokens += done["usage"]["completion_tokens"]


async def run_parley(base: str, script: list[Turn], sessions: int, turns_per_session: int) -> dict:
    seen = Observed()
    limits = httpx.Limits(max_connections=sessions + 4, max_keepalive_connections=sessions + 4)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(one_session(http, script, turns_per_session, seen) for _ in range(sessions)))
        wall = time.perf_counter() - started
    done = len(seen.latency_s)
    return {
        "sessions": sessions, "turns": done, "errors": seen.errors, "turns_per_s": done / wall,
        "p50_ms": percentile(seen.latency_s, 50) * 1000, "p95_ms": percentile(seen.latency_s, 95) * 1000,
        "ttft_p50_ms": percentile(seen.first_token_s, 50) * 1000,
        "ttft_share": statistics.median(f / t for f, t in zip(seen.first_token_s, seen.latency_s, strict=True)),
        "decoder_tokens_per_s": seen.tokens / wall, "redis_share": seen.redis_ms / seen.total_ms,
    }


def server_peak_rss_mb() -> float:
    """Peak resident memory of the `parley serve` child process (VmHWM)."""
    for child in psutil.Process().children(recursive=True):
        if "app.cli" in " ".join(child.cmdline()):
            status = Path(f"/proc/{child.pid}/status").read_text()
            return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024
    return float("nan")


# --- report -------------------------------------------------------------------------------


def report(result: dict) -> str:
    lines = [
        f"# Throughput, {result['workload']} workload: Parley against a naive one-at-a-time pipeline (one run)", "",
        f"Decoder: PARLEY_DECODER={result['decoder']}.{' Quick mode (smoke test).' if result['quick'] else ''}", "",
        f"Machine: {result['machine']}. torch {result['torch']}, transformers {result['transformers']}.",
        f"Settings: {result['settings']}. Server peak RSS {result['peak_rss_mb']:.0f} MB.", "",
        "Baseline: the same default models called one turn at a time (plain transformers `generate`, "
        "faster-whisper `transcribe`, rapidocr), same prompts, no server.", "",
        "| kind | baseline | turns/s | p50 ms | p95 ms | decoder tok/s |", "|---|---|---|---|---|---|",
    ]
    cost = result["per_token"]
    lines[-2:-2] = [
        f"Per reply token at batch 1 on the long prompt, prefill included, in one process: plain `generate` "
        f"{cost['plain_ms_per_token']:.1f} ms, Parley's decoder ({cost['parley_dtype']}) "
        f"{cost['parley_ms_per_token']:.1f} ms: {cost['speedup']:.2f}x; the same reply: {cost['same_reply']}.", ""]
    for kind, runs in result["baseline"].items():
        for dtype, b in runs.items():
            lines.append(f"| {kind} | {dtype} | {b['turns_per_s']:.2f} | {b['p50_ms']:.0f} | {b['p95_ms']:.0f} | "
                         f"{b['decoder_tokens_per_s']:.1f} |")
    lines += ["", "Parley over HTTP, streamed; ratio = Parley turns/s over the baseline's "
              f"(in the decoder's dtype here, {result['decoder_dtype']}; and over float32).", "",
              "| kind | sessions | turns | turns/s | ratio | ratio vs fp32 | p50 ms | p95 ms | TTFT p50 ms | "
              "TTFT / latency | decoder tok/s | Redis share | errors |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for kind, levels in result["parley"].items():
        base = result["baseline"][kind]
        for r in levels:
            lines.append(
                f"| {kind} | {r['sessions']} | {r['turns']} | {r['turns_per_s']:.2f} | "
                f"{r['turns_per_s'] / base[result['decoder_dtype']]['turns_per_s']:.1f}x | "
                f"{r['turns_per_s'] / base['float32']['turns_per_s']:.1f}x | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | "
                f"{r['ttft_p50_ms']:.0f} | {r['ttft_share']:.2f} | {r['decoder_tokens_per_s']:.1f} | "
                f"{r['redis_share'] * 100:.2f}% | {r['errors']} |")
    lines += ["", "Targets (issues 8, 16): turns/s >= 1.2x the baseline at 1 session and >= 8x at 16 sessions; time "
              "to first token <= 0.25x the reply latency; Redis <= 3% of turn time.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="mix", choices=("mix", "long"))
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 and 4 sessions, one turn each")
    parser.add_argument("--levels", default="1,4,16,32", help="concurrent sessions, comma-separated")
    parser.add_argument("--kinds", default=None, help=f"of {', '.join(KINDS)} (mix only; default all)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--decoder", default="default", help="PARLEY_DECODER for the server (a causal LM other "
                        "than SmolLM2: also the per-token comparison's, which is SmolLM2's otherwise)")
    parser.add_argument("--turns-per-session", type=int, default=3)
    parser.add_argument("--baseline-turns", type=int, default=6)
    args = parser.parse_args()
    if args.quick:
        args.levels, args.turns_per_session, args.baseline_turns = "1,4", 1, 2
    levels = [int(x) for x in args.levels.split(",")]
    kinds = ["long"] if args.workload == "long" else (args.kinds or ("text" if args.quick else ",".join(KINDS))).split(",")
    turns = scripts()
    decoder_dtype = resolve_placement(args.device, cpu_dtype="auto").dtype
    dtype_name = str(decoder_dtype).removeprefix("torch.")
    # The per-token comparison is the causal LM's: SmolLM2, unless --decoder names another causal LM.
    causal_lm = DEFAULT if args.decoder in (DEFAULT, SMOLLM2) or args.decoder.startswith(("fused:", "openai:")) \
        else args.decoder

    result: dict = {"baseline": {}, "parley": {}, "decoder_dtype": dtype_name, "workload": args.workload,
                    "quick": args.quick, "decoder": args.decoder}
    # Parley first, the baseline after: once torch has run here, its OpenMP workers spin (OMP_WAIT_POLICY=ACTIVE)
    # for the rest of this process's life, and would take one of the machine's cores from the server.
    prefix = f"parley-bench-{uuid.uuid4().hex}"
    env = {"PARLEY_REDIS_URL": REDIS_URL, "PARLEY_REDIS_PREFIX": prefix, "PARLEY_DEVICE": args.device,
           "PARLEY_DECODER": args.decoder,
           "PARLEY_RATE_LIMIT_PER_MIN": "0", "PARLEY_TURN_RATE_LIMIT_PER_MIN": "0", "PARLEY_LOG_LEVEL": "WARNING",
           # one client address drives every session: the per-client and per-session limits would refuse it
           "PARLEY_CLIENT_RATE_LIMIT_PER_MIN": "0", "PARLEY_CLIENT_TURN_RATE_LIMIT_PER_MIN": "0",
           "PARLEY_SESSION_TURN_RATE_LIMIT_PER_MIN": "0"}
    try:
        with tempfile.TemporaryDirectory() as tmp, \
                parley_server(env, log_path=Path(tmp) / "server.log", ready_timeout_s=600) as base:
            asyncio.run(run_parley(base, turns["text"], 2, 2))  # warm-up, not reported
            for kind in kinds:
                for sessions in levels:
                    r = asyncio.run(run_parley(base, turns[kind], sessions, args.turns_per_session))
                    result["parley"].setdefault(kind, []).append(r)
                    print(f"parley {kind} x{sessions}: {r['turns_per_s']:.2f} turns/s, "
                          f"p50 {r['p50_ms']:.0f} ms, TTFT share {r['ttft_share']:.2f}, "
                          f"redis {r['redis_share'] * 100:.2f}%, errors {r['errors']}", flush=True)
            result["peak_rss_mb"] = server_peak_rss_mb()
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)

    for dtype in dict.fromkeys((torch.float32, decoder_dtype)):
        baseline = Baseline(args.device, dtype)
        baseline.turn(DialogueState(), [], turns["text"][0])  # warm-up, not timed
        if dtype == torch.float32:
            result["per_token"] = per_token_cost(baseline, causal_lm, args.device,
                                                 runs=1 if args.quick else 3)
            print(f"per token at batch 1: {result['per_token']}", flush=True)
        for kind in kinds:
            b = run_baseline(baseline, turns[kind], args.baseline_turns)
            result["baseline"].setdefault(kind, {})[str(dtype).removeprefix("torch.")] = b
            print(f"baseline {kind} {dtype}: {b['turns_per_s']:.2f} turns/s, p50 {b['p50_ms']:.0f} ms", flush=True)
        del baseline

    for kind, runs in result["parley"].items():
        for r in runs:
            ratio = r["turns_per_s"] / result["baseline"][kind][dtype_name]["turns_per_s"]
            print(f"parley {kind} x{r['sessions']}: {ratio:.1f}x the {dtype_name} baseline", flush=True)

    import transformers

    result |= {
        "machine": f"{platform.machine()}, {psutil.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
                   f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, {args.device}",
        "torch": torch.__version__, "transformers": transformers.__version__,
        "settings": f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']} (both sides), decoder {dtype_name}, "
                    f"max_new_tokens {MAX_NEW_TOKENS}, decoder_max_batch 32, encoder batches <= 16 within 5 ms, "
                    f"{args.turns_per_session} turns per session",
    }
    name = f"throughput-{args.workload}{'-quick' if args.quick else ''}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    (RESULTS / f"{name}.md").write_text(report(result))
    if not args.quick:  # RESULTS.md: the latest full run of each workload
        parts = [(RESULTS / f"throughput-{w}.md") for w in ("mix", "long")]
        (Path(__file__).parent / "RESULTS.md").write_text("\n".join(p.read_text() for p in parts if p.exists()))
    print(f"wrote {RESULTS / name}.md")


if __name__ == "__main__":
    main()
