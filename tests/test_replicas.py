"""Two `parley serve` replicas on one Redis, 32 concurrent clients on 8 sessions: no turn lost,
duplicated or reordered, and every session's state agrees with its history."""

import threading
import time
import uuid
from collections import Counter

import httpx
import pytest

from tests.factories import tiny_causal_lm
from tests.server import NO_RATE_LIMITS, parley_replicas

SESSIONS = 8
CLIENTS_PER_SESSION = 4
TURNS_PER_CLIENT = 4
MAX_TRIES = 8  # per turn: the first send and up to 7 retries after 409/429/503 or a transport error


@pytest.fixture(scope="module")
def replicas(redis_url, tmp_path_factory):
    decoder = tiny_causal_lm(tmp_path_factory.mktemp("decoder"))
    env = {
        "PARLEY_DECODER": str(decoder), "PARLEY_DECODER_MAX_NEW_TOKENS": "4",
        "PARLEY_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "PARLEY_LOCK_WAIT_MS": "30000",  # turns of one session queue rather than fail
        # 128 turns in seconds from one address would trip the default rate limits (429s are still accepted below).
        **NO_RATE_LIMITS,
    }
    with parley_replicas(redis_url, 2, log_dir=tmp_path_factory.mktemp("log"), env=env) as bases:
        yield bases


def _text(client: str, n: int) -> str:
    return f"note {client} t{n} my email is {client}t{n}@example.com"


def test_two_replicas_keep_every_turn_once_and_in_order(replicas):
    a, b = replicas
    with httpx.Client(base_url=a, timeout=30) as http:
        created = [http.post("/v1/sessions") for _ in range(SESSIONS)]
    assert all(r.status_code == 201 for r in created), [(r.status_code, r.text[:200]) for r in created]
    sessions = [r.json()["id"] for r in created]
    lock = threading.Lock()
    figures = Counter()
    accepted: dict[str, list[tuple[str, str]]] = {sid: [] for sid in sessions}  # session -> [(client, text)]
    uncertain: dict[str, set[str]] = {sid: set() for sid in sessions}  # gave up after an unknown outcome
    errors: list[str] = []

    def client(sid: str, name: str) -> None:
        with httpx.Client(timeout=60) as http:
            for n in range(1, TURNS_PER_CLIENT + 1):
                text, key, unknown = _text(name, n), uuid.uuid4().hex, False
                with lock:
                    figures["sent"] += 1
                for attempt in range(MAX_TRIES):
                    base = (a, b)[(n + attempt) % 2]  # alternate replicas, retries included
                    try:
                        reply = http.post(f"{base}/v1/sessions/{sid}/turns", json={"text": text},
                                          headers={"Idempotency-Key": key})
                    except httpx.TransportError:  # unknown outcome: the same key makes the retry safe
                        with lock:
                            figures["transport_errors"] += 1
                        unknown = True
                        time.sleep(0.2)
                        continue
                    if reply.status_code == 200:
                        with lock:
                            figures["accepted"] += 1
                            figures["replayed"] += reply.json()["replayed"] is True
                            accepted[sid].append((name, text))
                        break
                    if reply.status_code in (409, 429, 503) and "retry-after" in reply.headers:
                        with lock:
                            figures[f"refused_{reply.status_code}"] += 1
                        time.sleep(min(float(reply.headers["retry-after"]), 2.0) * 0.5)
                        continue
                    errors.append(f"{name} t{n}: unexpected {reply.status_code} {reply.text[:200]}")
                    return
                else:
                    with lock:
                        figures["gave_up"] += 1
                        if unknown:
                            uncertain[sid].add(text)

    threads = [threading.Thread(target=client, args=(sid, f"c{s * CLIENTS_PER_SESSION + c:02d}"))
               for s, sid in enumerate(sessions) for c in range(CLIENTS_PER_SESSION)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a client hung"
    elapsed = time.monotonic() - started

    lost = duplicated = reordered = bad_numbers = bad_state = 0
    with httpx.Client(base_url=b, timeout=30) as http:
        for sid in sessions:
            detail = http.get(f"/v1/sessions/{sid}").json()
            history, state = detail["history"], detail["state"]
            users = [e for e in history if e["role"] == "user"]
            got, want = Counter(e["text"] for e in users), Counter(text for _, text in accepted[sid])
            want.update(text for text in uncertain[sid] if got[text])  # committed once is right for those too
            lost += sum((want - got).values())
            duplicated += sum((got - Counter(set(got))).values()) + sum((got - want).values())
            n = len(users)
            numbers = [e["turn"] for e in history]
            if numbers != [t for t in range(1, n + 1) for _ in (0, 1)] or [e["role"] for e in history] != ["user", "assistant"] * n:
                bad_numbers += 1
            order = [e["text"] for e in users]
            for name in {name for name, _ in accepted[sid]}:
                sent = [text for who, text in accepted[sid] if who == name]
                if [t for t in order if t in set(sent)] != sent:
                    reordered += 1
            last_email = users[-1]["text"].rsplit(" ", 1)[-1] if users else None
            if state["turns"] != n or state["slots"].get("email") != last_email:
                bad_state += 1
    figures.update(lost=lost, duplicated=duplicated, reordered=reordered)
    refused = sum(v for k, v in figures.items() if k.startswith("refused_"))
    print(f"\nreplicas: {len(threads)} clients x {TURNS_PER_CLIENT} turns on {SESSIONS} sessions in {elapsed:.1f} s: "
          f"sent={figures['sent']} accepted={figures['accepted']} refused={refused} "
          f"({', '.join(f'{k}={v}' for k, v in sorted(figures.items()) if k.startswith('refused_')) or 'none'}) "
          f"replayed={figures['replayed']} transport_errors={figures['transport_errors']} gave_up={figures['gave_up']} "
          f"lost={lost} duplicated={duplicated} reordered={reordered} bad_numbers={bad_numbers} bad_state={bad_state}")
    assert not errors, errors[:5]
    assert lost == duplicated == reordered == 0
    assert bad_numbers == 0 and bad_state == 0
    assert figures["accepted"] + figures["gave_up"] == figures["sent"]
    assert all(accepted.values()), "every session got turns through"
