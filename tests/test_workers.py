"""`parley serve --workers 2` as a real process: both workers answer on one port, and turns of one
session sent over fresh connections (so spread over both) stay ordered and are each committed once.
Then the docker-compose `replicas` profile's nginx config, run by a real nginx in front of it."""

import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.factories import tiny_causal_lm
from tests.server import NO_RATE_LIMITS, free_port, parley_test_server, wait_until

CLIENTS = 4
TURNS_PER_CLIENT = 3
NGINX_CONF = Path(__file__).resolve().parent.parent / "deploy" / "nginx.conf"
MAX_PROBES = 400  # /readyz calls, each on a new connection, to see both workers ready


@pytest.fixture(scope="module")
def server(redis_url, tmp_path_factory):
    env = {
        "PARLEY_DECODER": str(tiny_causal_lm(tmp_path_factory.mktemp("decoder"))),
        "PARLEY_DECODER_MAX_NEW_TOKENS": "4", "PARLEY_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "PARLEY_TORCH_THREADS": "1", "PARLEY_LOCK_WAIT_MS": "30000",
        **NO_RATE_LIMITS,
    }
    with parley_test_server(redis_url, log_dir=tmp_path_factory.mktemp("log"), env=env,
                            args=("--workers", "2")) as base:
        yield base


def _ready_workers(base: str) -> set[str]:
    """Workers seen answering /readyz 200; the first ready one may answer alone for a while."""
    seen: set[str] = set()
    for _ in range(MAX_PROBES):
        with httpx.Client(timeout=10) as http:  # a new connection each time: the kernel picks a worker
            response = http.get(f"{base}/readyz")
        if response.status_code == 200:
            seen.add(response.headers["x-parley-worker"])
        if len(seen) == 2:
            break
        time.sleep(0.05)
    return seen


def test_two_workers_answer_and_keep_one_session_in_order(server):
    assert len(_ready_workers(server)) == 2
    sid = httpx.post(f"{server}/v1/sessions", timeout=10).json()["id"]
    lock, served_by, sent = threading.Lock(), Counter(), {f"c{i}": [] for i in range(CLIENTS)}
    errors: list[str] = []

    def client(name: str) -> None:
        for n in range(TURNS_PER_CLIENT):
            text = f"note {name} t{n}"
            with httpx.Client(timeout=60) as http:
                reply = http.post(f"{server}/v1/sessions/{sid}/turns", json={"text": text})
            with lock:
                if reply.status_code != 200:
                    errors.append(f"{name}: {reply.status_code} {reply.text[:200]}")
                    return
                served_by[reply.headers["x-parley-worker"]] += 1
                sent[name].append(text)

    threads = [threading.Thread(target=client, args=(name,)) for name in sent]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    detail = httpx.get(f"{server}/v1/sessions/{sid}", timeout=10).json()
    users = [e["text"] for e in detail["history"] if e["role"] == "user"]
    total = CLIENTS * TURNS_PER_CLIENT
    assert sorted(users) == sorted(t for texts in sent.values() for t in texts) and len(users) == total
    assert [e["turn"] for e in detail["history"]] == [t for t in range(1, total + 1) for _ in (0, 1)]
    for texts in sent.values():  # each client's turns in the order it sent them
        assert [u for u in users if u in texts] == texts
    assert detail["state"]["turns"] == total
    print(f"\nturns per worker: {dict(served_by)}")
    assert len(served_by) == 2, served_by


@pytest.fixture(scope="module")
def balancer(server, tmp_path_factory):
    """nginx with deploy/nginx.conf, its upstream pointed at `server` instead of compose's `replica`."""
    directory = tmp_path_factory.mktemp("nginx")
    port = free_port()
    config = NGINX_CONF.read_text()
    assert "server replica:8000 " in config and "listen 80;" in config
    config = config.replace("server replica:8000 ", f"server {server.removeprefix('http://')} ")
    (directory / "nginx.conf").write_text(config.replace("listen 80;", f"listen 127.0.0.1:{port};"))
    settings = f"daemon off; pid {directory}/nginx.pid; error_log {directory}/error.log;"
    process = subprocess.Popen(["nginx", "-p", str(directory), "-c", str(directory / "nginx.conf"), "-g", settings],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{base}/lb-healthz", timeout=2).status_code == 200, process=process,
                   timeout_s=20, what="nginx", log=directory / "error.log", interval_s=0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_compose_load_balancer_config_serves_turns_and_streams(balancer):
    """The compose profile's nginx.conf, run by a real nginx: JSON turns, SSE tokens, the worker header."""
    with httpx.Client(base_url=balancer, timeout=60) as http:
        assert http.get("/readyz").headers["x-parley-worker"]
        sid = http.post("/v1/sessions").json()["id"]
        assert http.post(f"/v1/sessions/{sid}/turns", json={"text": "My lamp arrived broken"}).json()["turn"] == 1
        with http.stream("POST", f"/v1/sessions/{sid}/turns?stream=true", json={"text": "hello"}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            names = [line.removeprefix("event: ") for line in response.iter_lines() if line.startswith("event: ")]
        assert names[0] == "token" and names[-1] == "done"
        assert http.get(f"/v1/sessions/{sid}").json()["state"]["turns"] == 2
