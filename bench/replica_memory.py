"""Memory of one Parley replica: RSS of a real `parley serve` process with the default models,
after start-up and after a text, an image and a voice turn (each model has run once).

Run from the repository root:  .venv/bin/python -m bench.replica_memory
Writes bench/results/replica_memory.md and .json. Not a test: nothing here asserts.
A `--workers N` server or N replicas need about N times this (every process loads its own models).
"""

import base64
import json
import platform
import tempfile
import time
from pathlib import Path

import httpx

from tests.samples import document, encoded, speech_wav
from tests.server import parley_test_server

RESULTS = Path(__file__).parent / "results"
REDIS_URL = "redis://127.0.0.1:6379/0"


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {name: round(int(fields[name].split()[0]) / 1024, 1) for name in ("VmRSS", "VmHWM")}


def server_pid(base: str) -> int:
    return int(httpx.get(f"{base}/readyz", timeout=10).headers["x-parley-worker"].rsplit(":", 1)[1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        with parley_test_server(REDIS_URL, log_dir=Path(tmp), env={"PARLEY_DATA_DIR": str(Path.home() / ".cache/parley")}) as base:
            ready_s = time.perf_counter() - started
            pid = server_pid(base)
            after_start = memory_mb(pid)
            with httpx.Client(base_url=base, timeout=300) as http:
                sid = http.post("/v1/sessions").json()["id"]
                image = base64.b64encode(encoded(document(["Order A7Q-4412"]), "PNG")).decode()
                audio = base64.b64encode(speech_wav("my order number is four five one two")).decode()
                for body in ({"text": "my lamp arrived broken"}, {"images": [{"data": image}]},
                             {"audio": {"data": audio}}):
                    http.post(f"/v1/sessions/{sid}/turns", json=body).raise_for_status()
            after_turns = memory_mb(pid)
    result = {"machine": platform.platform(), "ready_s": round(ready_s, 1),
              "after_start_mb": after_start, "after_turns_mb": after_turns}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "replica_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "replica_memory.md").write_text(
        "# Memory per replica (default models, CPU, fp32)\n\n"
        f"Machine: {result['machine']}; ready after {result['ready_s']} s.\n\n"
        "| when | RSS (MB) | peak RSS (MB) |\n|---|---|---|\n"
        f"| after start-up | {after_start['VmRSS']} | {after_start['VmHWM']} |\n"
        f"| after a text, an image and a voice turn | {after_turns['VmRSS']} | {after_turns['VmHWM']} |\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
