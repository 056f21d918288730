"""Redis outages under load, against a redis-server of the test's own: paused (SIGSTOP) and crashed
(SIGKILL, restarted on the same port and AOF dir). Parley answers 503 + Retry-After (never 500, never
hangs), /readyz follows Redis down and back up without a Parley restart, and what was committed stays.

A soak test (pytest -m soak): load threads, outages scripted with sleeps and assertions on time windows. The
default run checks the same outages step by step, without a clock: tests/api/test_redis_down.py."""

import threading
import time
import uuid
from collections import Counter

import httpx
import pytest

from tests.factories import tiny_causal_lm
from tests.server import NO_RATE_LIMITS, RedisProcess, parley_server, unique_prefix

pytestmark = pytest.mark.soak

MAX_RESPONSE_S = 5.0  # no request may take longer, outage or not
LOAD_CLIENTS = 4


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisProcess(tmp_path_factory.mktemp("redis-data"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def parley(redis_server, tmp_path_factory):
    decoder = tiny_causal_lm(tmp_path_factory.mktemp("decoder"))
    env = {
        "PARLEY_REDIS_URL": redis_server.url, "PARLEY_REDIS_PREFIX": unique_prefix(), "PARLEY_REDIS_TIMEOUT_S": "0.5",
        "PARLEY_DECODER": str(decoder), "PARLEY_DECODER_MAX_NEW_TOKENS": "4",
        "PARLEY_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        # A turn cut off mid-commit leaves its lock behind until lock_ttl: keep that short, and the wait bounded.
        "PARLEY_LOCK_TTL_MS": "4000", "PARLEY_LOCK_WAIT_MS": "1500",
        **NO_RATE_LIMITS,
    }
    with parley_server(env, log_path=tmp_path_factory.mktemp("log") / "server.log") as base:
        yield base


class Recorder:
    """Every request's start time, duration and status (or the exception's name)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # started, seconds, status, has Retry-After, is a /readyz probe
        self.calls: list[tuple[float, float, int | str, bool, bool]] = []

    def request(self, http: httpx.Client, method: str, url: str, **kwargs) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            self._add(started, type(exc).__name__, False, url)
            return None
        self._add(started, response.status_code, "retry-after" in response.headers, url)
        return response

    def _add(self, started: float, status: int | str, retry_after: bool, url: str) -> None:
        with self.lock:
            self.calls.append((started, time.monotonic() - started, status, retry_after, url == "/readyz"))

    def between(self, start: float, end: float) -> list[tuple[float, float, int | str, bool, bool]]:
        """API requests (not /readyz probes) started in [start, end]."""
        return [call for call in self.calls if start <= call[0] <= end and not call[4]]


def _wait_readyz(http: httpx.Client, recorder: Recorder, want: int, timeout_s: float) -> float:
    """Seconds until GET /readyz answers `want`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        response = recorder.request(http, "GET", "/readyz")
        if response is not None and response.status_code == want:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"/readyz not {want} within {timeout_s} s")


def _post(http: httpx.Client, url: str, want: int, **kwargs) -> dict:
    """POST, retried (same body and headers) on a 503 with Retry-After, which a busy 2-core box can produce with a
    0.5 s Redis timeout; anything else than `want` fails the test with the answer."""
    for _ in range(5):
        response = http.post(url, **kwargs)
        if response.status_code != 503 or "retry-after" not in response.headers:
            break
        time.sleep(0.5)
    assert response.status_code == want, f"POST {url}: {response.status_code} {response.text[:300]}"
    return response.json()


def _text(client: int, n: int) -> str:
    return f"note l{client} t{n} my email is l{client}t{n}@example.com"


def test_redis_outages_under_load(parley, redis_server):
    recorder = Recorder()
    http = httpx.Client(base_url=parley, timeout=15)
    # Committed before any fault: 3 sessions, 2 turns each.
    kept = [_post(http, "/v1/sessions", 201)["id"] for _ in range(3)]
    for i, sid in enumerate(kept):
        for n in (1, 2):
            _post(http, f"/v1/sessions/{sid}/turns", 200, json={"text": f"k{i} my email is k{i}t{n}@example.com"},
                  headers={"Idempotency-Key": uuid.uuid4().hex})
    before = {sid: http.get(f"/v1/sessions/{sid}").json() for sid in kept}

    # Load: each client sends numbered turns to a session of its own, retrying each with its Idempotency-Key.
    load = [_post(http, "/v1/sessions", 201)["id"] for _ in range(LOAD_CLIENTS)]
    stop = threading.Event()
    accepted: dict[str, list[str]] = {sid: [] for sid in load}
    uncertain: dict[str, list[str]] = {sid: [] for sid in load}  # given up on: committed at most once
    replayed = Counter()

    def client(c: int, sid: str) -> None:
        with httpx.Client(base_url=parley, timeout=15) as own:
            n = 0
            while not stop.is_set():
                n += 1
                text, key = _text(c, n), uuid.uuid4().hex
                deadline = time.monotonic() + 30
                while True:
                    reply = recorder.request(own, "POST", f"/v1/sessions/{sid}/turns", json={"text": text},
                                             headers={"Idempotency-Key": key})
                    if reply is not None and reply.status_code == 200:
                        accepted[sid].append(text)
                        replayed[sid] += reply.json()["replayed"] is True  # committed by a try that got a 503
                        break
                    if time.monotonic() > deadline or (reply is not None and reply.status_code not in (409, 503)):
                        uncertain[sid].append(text)
                        break
                    retry_after = float(reply.headers.get("retry-after", 0.2)) if reply is not None else 0.2
                    time.sleep(min(retry_after, 0.3))  # sooner than asked: more requests see the outage

    threads = [threading.Thread(target=client, args=(c, sid)) for c, sid in enumerate(load)]
    for thread in threads:
        thread.start()
    windows: dict[str, tuple[float, float]] = {}
    figures: dict[str, float] = {}
    try:
        time.sleep(1.0)
        # 1. Redis paused (unresponsive but holding its data).
        start = time.monotonic()
        redis_server.pause()
        figures["pause_readyz_down_s"] = _wait_readyz(http, recorder, 503, 5)
        time.sleep(max(0.0, start + 3 - time.monotonic()))
        redis_server.resume()
        figures["pause_readyz_up_s"] = _wait_readyz(http, recorder, 200, 5)
        windows["pause"] = (start, time.monotonic())
        time.sleep(1.0)
        # 2. Redis crashed (SIGKILL) and restarted on the same port and data dir; Parley keeps running.
        start = time.monotonic()
        redis_server.kill()
        figures["crash_readyz_down_s"] = _wait_readyz(http, recorder, 503, 5)
        time.sleep(max(0.0, start + 2 - time.monotonic()))
        redis_server.start()
        figures["crash_readyz_up_s"] = _wait_readyz(http, recorder, 200, 5)
        windows["crash"] = (start, time.monotonic())
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a load client hung"

    for name, (start, end) in windows.items():
        outcomes = Counter(str(status) for _, _, status, _, _ in recorder.between(start, end))
        print(f"\n{name} outage {end - start:.1f} s: request outcomes {dict(sorted(outcomes.items()))}")
        assert outcomes["503"] > 0, f"no request saw the {name} outage"
    print("readyz: " + ", ".join(f"{k}={v:.2f}" for k, v in figures.items()))
    statuses = Counter(str(status) for _, _, status, _, _ in recorder.calls)
    slowest = max(seconds for _, seconds, _, _, _ in recorder.calls)
    print(f"all requests incl. /readyz probes: {dict(sorted(statuses.items()))}; slowest {slowest:.2f} s")
    assert all(isinstance(status, int) for _, _, status, _, _ in recorder.calls), "a request failed at transport level"
    assert all(status < 500 or status == 503 for _, _, status, _, _ in recorder.calls), statuses
    refusals = [call for call in recorder.calls if call[2] in (409, 503) and not call[4]]
    assert all(retry_after for _, _, _, retry_after, _ in refusals), "a 409/503 without Retry-After"
    assert slowest < MAX_RESPONSE_S

    # What was committed before the faults is intact, and those sessions take new turns.
    for i, sid in enumerate(kept):
        assert http.get(f"/v1/sessions/{sid}").json() == before[sid]
        reply = _post(http, f"/v1/sessions/{sid}/turns", 200, json={"text": f"k{i} my email is k{i}t3@example.com"},
                      headers={"Idempotency-Key": uuid.uuid4().hex})
        assert reply["turn"] == 3
        assert http.get(f"/v1/sessions/{sid}/state").json()["slots"]["email"] == f"k{i}t3@example.com"

    # Load sessions: every accepted turn once, in order; a given-up turn at most once; state agrees.
    lost = duplicated = 0
    for sid in load:
        detail = http.get(f"/v1/sessions/{sid}").json()
        users = [e["text"] for e in detail["history"] if e["role"] == "user"]
        got = Counter(users)
        lost += sum(1 for text in accepted[sid] if got[text] == 0)
        duplicated += sum(count - 1 for count in got.values() if count > 1)
        assert set(users) <= set(accepted[sid]) | set(uncertain[sid])
        assert [t for t in users if t in set(accepted[sid])] == accepted[sid]
        assert [e["turn"] for e in detail["history"]] == [t for t in range(1, len(users) + 1) for _ in (0, 1)]
        assert detail["state"]["turns"] == len(users)
    print(f"load: accepted={sum(map(len, accepted.values()))} given_up={sum(map(len, uncertain.values()))} "
          f"replayed={sum(replayed.values())} "
          f"lost={lost} duplicated={duplicated}")
    assert lost == duplicated == 0
    http.close()
