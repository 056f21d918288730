"""Per-modality turn latency and start-up time of a real `parley serve` with the default models.

Run from the repository root:  .venv/bin/python -m bench.latency [--turns 10]
Writes bench/results/latency.md and latency.json. Not a test: nothing here asserts.
"""

import argparse
import base64
import json
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import redis
import torch

from tests.samples import document, encoded, photo_of, speech_wav
from tests.server import parley_server

RESULTS = Path(__file__).parent / "results"
REDIS_URL = "redis://127.0.0.1:6379/0"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def payloads() -> dict[str, dict]:
    receipt = encoded(photo_of(document(["ACME STORE", "Order No: A7Q-4412", "Total: $37.50"])), "JPEG", quality=85)
    voice = speech_wav("my order number is four five one two")
    return {
        "text": {"text": "My lamp arrived broken, the order number is A7Q-4412"},
        "image": {"images": [{"data": b64(receipt)}]},
        "voice": {"audio": {"data": b64(voice)}},
        "image+voice": {"images": [{"data": b64(receipt)}], "audio": {"data": b64(voice)}},
    }


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def measure(base: str, turns: int) -> dict[str, dict]:
    table = {}
    with httpx.Client(base_url=base, timeout=300) as http:
        for name, body in payloads().items():
            latencies, server_steps = [], []
            for _ in range(turns):
                session = http.post("/v1/sessions").json()["id"]  # a fresh session: same work every turn
                started = time.perf_counter()
                response = http.post(f"/v1/sessions/{session}/turns", json=body)
                latencies.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
                server_steps.append(response.json()["timings_ms"])
            steps = {k: round(statistics.median(s[k] for s in server_steps), 1) for k in server_steps[0]}
            table[name] = {"p50_ms": round(percentile(latencies, 50), 1), "p95_ms": round(percentile(latencies, 95), 1),
                           "turns": turns, "median_steps_ms": steps}
            print(name, table[name], flush=True)
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=10)
    args = parser.parse_args()
    prefix = f"parley-bench-{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        env = {"PARLEY_REDIS_URL": REDIS_URL, "PARLEY_REDIS_PREFIX": prefix}
        with parley_server(env, log_path=Path(tmp) / "server.log", ready_timeout_s=600) as base:
            startup_s = round(time.perf_counter() - started, 1)
            models = httpx.get(f"{base}/readyz").json()["models"]
            table = measure(base, args.turns)
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.python_version()}",
        "torch": torch.__version__, "startup_s": startup_s,
        "model_load_s": {m["name"]: m["load_s"] for m in models}, "latency": table,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latency.json").write_text(json.dumps(result, indent=2))
    rows = "\n".join(f"| {k} | {v['p50_ms']} | {v['p95_ms']} | {v['turns']} | {v['median_steps_ms']} |"
                     for k, v in table.items())
    (RESULTS / "latency.md").write_text(
        f"# Turn latency, one request at a time\n\n{result['machine']}; torch {result['torch']}; "
        f"start-up to ready {startup_s} s; model loads {result['model_load_s']} s\n\n"
        f"| turn | p50 ms | p95 ms | turns | median server steps (ms) |\n|---|---|---|---|---|\n{rows}\n"
    )
    print(f"start-up {startup_s} s; wrote {RESULTS}/latency.md")


if __name__ == "__main__":
    main()
