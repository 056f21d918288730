"""What spoken replies and webhooks add to a turn: synthesis time per voice, and a signed webhook
call on loopback (answered, and against a backend that is down, with the default retries).

Run from the repository root:  .venv/bin/python -m bench.voice_actions [--repeats 10]
Writes bench/results/voice_actions.md and voice_actions.json. Not a test: nothing here asserts.
"""

import argparse
import asyncio
import io
import json
import platform
import statistics
import time
import wave
from pathlib import Path

from app.dialogue.actions import Conversation, WebhookClient
from app.dialogue.domain import ACTION_RETRIES, ACTION_TIMEOUT_S, ActionSpec
from app.dialogue.state import DialogueState
from models.tts import load_synthesizer, piper_installed
from tests.webhooks import Reply, backend_server

RESULTS = Path(__file__).parent / "results"
REPLIES = {
    "short": "Your order 4512 has shipped and arrives on Friday.",
    "long": "I'm sorry your lamp arrived damaged. I've logged a damage report for order A7Q-4412, and we'll send "
            "a replacement or a full refund, whichever you prefer. A prepaid return label is on its way to your inbox.",
}
SECRET = b"bench-secret"
SHIPPED = {"slots": {"order_status": "shipped", "delivery_date": "Friday"}}


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


def voices(repeats: int) -> list[dict]:
    rows = []
    for choice in ("piper", "espeak") if piper_installed() else ("espeak",):
        started = time.perf_counter()
        voice = load_synthesizer(choice)
        load_s = time.perf_counter() - started
        for name, text in REPLIES.items():
            times, wav = [], b""
            for _ in range(repeats):
                started = time.perf_counter()
                wav = voice.synthesize(text)
                times.append(time.perf_counter() - started)
            with wave.open(io.BytesIO(wav)) as reader:
                seconds = reader.getnframes() / reader.getframerate()
            rows.append({"voice": voice.source, "reply": name, "chars": len(text), "load_s": round(load_s, 2),
                         "synth_ms": median_ms(times), "audio_s": round(seconds, 2), "wav_kb": len(wav) // 1024,
                         "real_time_factor": round(statistics.median(times) / seconds, 3)})
    return rows


async def webhooks(repeats: int) -> list[dict]:
    who, state = Conversation("s", "t"), DialogueState(intent="order_status", slots={"order_id": "4512"})
    client = WebhookClient(SECRET)
    rows = []
    with backend_server(SECRET) as backend:
        for case, reply in (("answered", Reply(json=SHIPPED)), ("down (500)", Reply(500))):
            url = backend.script("/orders", reply)
            spec = ActionSpec("order_lookup", url, ACTION_TIMEOUT_S, ACTION_RETRIES, ("order_status", "delivery_date"))
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                await client.call_action(spec, who, state, [])
                times.append(time.perf_counter() - started)
            rows.append({"case": case, "attempts": len(backend.requests("/orders")) // repeats,
                         "median_ms": median_ms(times), "max_ms": round(max(times) * 1000, 1)})
    await client.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    result = {"machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
              "voices": voices(args.repeats), "webhooks": asyncio.run(webhooks(args.repeats))}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "voice_actions.json").write_text(json.dumps(result, indent=2))
    lines = ["# Spoken replies and webhooks", "", f"Machine: {result['machine']}; medians of {args.repeats} runs.", "",
             "| voice | reply | chars | synth ms | audio s | real-time factor | WAV KB | voice load s |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['voice']} | {r['reply']} | {r['chars']} | {r['synth_ms']} | {r['audio_s']} | "
              f"{r['real_time_factor']} | {r['wav_kb']} | {r['load_s']} |" for r in result["voices"]]
    lines += ["", f"Webhook on loopback, timeout {ACTION_TIMEOUT_S} s, {ACTION_RETRIES} retries:", "",
              "| backend | attempts | median ms | max ms |", "|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['attempts']} | {r['median_ms']} | {r['max_ms']} |" for r in result["webhooks"]]
    (RESULTS / "voice_actions.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
