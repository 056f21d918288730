"""Accuracy of the default speech and vision encoders on generated customer-service media.

Run from the repository root:  .venv/bin/python -m bench.accuracy [--n 24]
Speech: espeak-ng in three voices reads order ids as digits or letter-and-digit codes; we
report word error rate and whether the order_id slot comes out exactly. Images: receipts,
shipping labels and error screens, dark and light, flat PNG or a rotated JPEG photo; we
report exact match of the order_id slot read by OCR. Writes bench/results/accuracy.md/json.
"""

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import numpy as np

from app.dialogue.domain import load_domain
from app.dialogue.slots import extract_slots
from app.media.audio import decode_audio
from app.media.image import decode_image
from models.registry import resolve_placement
from models.speech import load_speech_encoder
from models.vision import load_vision_encoder
from tests.samples import document, encoded, photo_of, speech_wav

RESULTS = Path(__file__).parent / "results"
VOICES = ("en-us", "en-us+f3", "en-gb+m3")
DIGITS = "zero one two three four five six seven eight nine".split()
SLOTS = load_domain().slots


def spoken_id(order_id: str) -> str:
    """'KX-90817' -> 'K X dash nine zero eight one seven'."""
    words = []
    for ch in order_id:
        words.append("dash" if ch == "-" else DIGITS[int(ch)] if ch.isdigit() else ch)
    return " ".join(words)


def random_id(rng: random.Random) -> str:
    shape = rng.choice(["digits", "code"])
    if shape == "digits":
        return "".join(rng.choice("123456789") for _ in range(rng.choice([4, 5])))
    letters = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(2))
    return f"{letters}-{''.join(rng.choice('0123456789') for _ in range(5))}"


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance / reference length (lower-case, punctuation dropped)."""
    ref, hyp = (["".join(c for c in w if c.isalnum()) for w in s.lower().split()] for s in (reference, hypothesis))
    dist = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, dist[0] = dist[0], i
        for j, h in enumerate(hyp, 1):
            prev, dist[j] = dist[j], min(dist[j] + 1, dist[j - 1] + 1, prev + (r != h))
    return dist[len(hyp)] / max(1, len(ref))


def speech_cases(rng: random.Random, n: int) -> list[dict]:
    sentences = ["I want a refund for my headphones", "my package arrived damaged", "please send me a replacement"]
    cases = []
    for i in range(n):
        order_id = random_id(rng)
        cases.append({"voice": VOICES[i % len(VOICES)], "order_id": order_id,
                      "said": f"my order number is {spoken_id(order_id)}", "plain": rng.choice(sentences)})
    return cases


def run_speech(cases: list[dict]) -> dict:
    encoder = load_speech_encoder("default", placement=resolve_placement("cpu"), offline=True,
                                  cache_dir=Path.home() / ".cache" / "parley" / "models")
    exact, errors, seconds = [], [], []
    for case in cases:
        clips = [decode_audio(speech_wav(text, voice=case["voice"]), max_seconds=60, max_bytes=10**7)
                 for text in (case["said"], case["plain"])]
        started = time.perf_counter()
        said, plain = encoder.predict_batch(clips)
        seconds.append((time.perf_counter() - started) / 2)
        found = extract_slots(said.text, SLOTS, requested_slot="order_id").get("order_id")
        exact.append(found is not None and found.value.replace("-", "") == case["order_id"].replace("-", ""))
        errors.append(wer(case["plain"], plain.text))
        case.update(heard=said.text, heard_plain=plain.text, slot=found.value if found else None)
    return {"clips": 2 * len(cases), "order_id_exact": round(float(np.mean(exact)), 3),
            "wer_plain_sentences": round(float(np.mean(errors)), 3),
            "seconds_per_clip_p50": round(statistics.median(seconds), 3), "cases": cases}


def _layout(kind: int, order_id: str, rng: random.Random) -> list[str]:
    """A receipt, a shipping label or an error screen carrying the order id."""
    if kind == 0:
        return ["ACME STORE", f"Order No: {order_id}", f"Total: ${rng.randint(5, 300)}.{rng.randint(10, 99)}"]
    if kind == 1:
        return ["SHIP TO: Jane Doe", "12 Harbour Road", f"Order {order_id}", "Tracking 1Z 999 AA1"]
    return [f"Error 0x{rng.randint(10**7, 10**8 - 1):08X}", "Payment failed", f"Order {order_id}"]


def image_cases(n: int, rng: random.Random) -> list[dict]:
    return [{"order_id": random_id(rng), "layout": i % 3, "dark": i % 2 == 1, "photo": i % 4 >= 2} for i in range(n)]


def run_images(cases: list[dict], rng: random.Random) -> dict:
    encoder = load_vision_encoder(caption_model=None, backbone=None, placement=resolve_placement("cpu"), offline=True)
    exact, seconds = [], []
    for case in cases:
        lines = _layout(case["layout"], case["order_id"], rng)
        image = document(lines, dark=case["dark"])
        data = encoded(photo_of(image, degrees=rng.uniform(-7, 7)), "JPEG", quality=80) if case["photo"] else encoded(image)
        started = time.perf_counter()
        reading = encoder.predict_batch([decode_image(data, max_bytes=10**7, max_pixels=4 * 10**7)])[0]
        seconds.append(time.perf_counter() - started)
        found = extract_slots(reading.ocr_text, SLOTS).get("order_id")
        exact.append(found is not None and found.value == case["order_id"])
        case.update(ocr=reading.ocr_text, slot=found.value if found else None)
    return {"images": len(cases), "order_id_exact": round(float(np.mean(exact)), 3),
            "seconds_per_image_p50": round(statistics.median(seconds), 3), "cases": cases}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=24, help="speech cases (2 clips each) and images")
    args = parser.parse_args()
    rng = random.Random(7)
    speech = run_speech(speech_cases(rng, args.n))
    images = run_images(image_cases(args.n, rng), rng)
    summary = {k: v for k, v in speech.items() if k != "cases"} | {"voices": list(VOICES)}
    seen = {k: v for k, v in images.items() if k != "cases"}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "accuracy.json").write_text(json.dumps({"speech": speech, "images": images}, indent=2))
    misses = [c for c in speech["cases"] if c["slot"] is None or c["slot"].replace("-", "") != c["order_id"].replace("-", "")]
    misread = [c for c in images["cases"] if c["slot"] != c["order_id"]]
    (RESULTS / "accuracy.md").write_text(
        "# Encoder accuracy on generated media\n\n"
        f"Speech ({', '.join(VOICES)}): {summary}\n\nImages: {seen}\n\n"
        "## Speech misses\n\n" + "".join(f"- {c['voice']}: said {c['said']!r}, heard {c['heard']!r}\n" for c in misses)
        + "\n## Image misses\n\n" + "".join(f"- {c}: read {c['ocr']!r}\n" for c in misread)
    )
    print("speech", summary)
    print("images", seen)


if __name__ == "__main__":
    main()
