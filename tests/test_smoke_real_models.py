"""The packaged default models, end to end through a real server: the README's promise."""

import json
import time

import httpx
import pytest

from tests.server import parley_test_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(redis_url, tmp_path_factory):
    # PARLEY_DATA_DIR stays at its default: the converted decoder is cached there across runs.
    with parley_test_server(redis_url, log_dir=tmp_path_factory.mktemp("log"), ready_timeout_s=300) as base:
        yield base


def test_four_turn_customer_service_conversation(server):
    with httpx.Client(base_url=server, timeout=120) as http:
        models = http.get("/readyz").json()["models"]
        names = ("text", "speech", "vision", "decoder", "tts")
        assert {m["name"]: m["status"] for m in models} == dict.fromkeys(names, "ready")
        assert all(m["source"].startswith("default") for m in models if m["name"] != "tts")
        session = http.post("/v1/sessions").json()["id"]
        expected = [
            ("Hello!", "greeting", {}),
            ("My lamp arrived broken", "damaged_item", {"product": "lamp"}),
            ("It's A7Q-4412", "damaged_item", {"product": "lamp", "order_id": "A7Q-4412"}),
            ("What was my order number?", "damaged_item", {"product": "lamp", "order_id": "A7Q-4412"}),
        ]
        for text, intent, slots in expected:
            body = http.post(f"/v1/sessions/{session}/turns", json={"text": text}).json()
            assert body["state"]["intent"] == intent, (text, body)
            assert slots.items() <= body["state"]["slots"].items(), (text, body)
            assert body["reply"].strip()
        assert "A7Q-4412" in body["reply"]


def test_first_token_arrives_well_before_the_reply_ends(server):
    with httpx.Client(base_url=server, timeout=120) as http:
        session = http.post("/v1/sessions").json()["id"]
        started = time.perf_counter()
        first = None
        with http.stream("POST", f"/v1/sessions/{session}/turns?stream=true",
                         json={"text": "Hi, I need some help with an order"}) as response:
            for line in response.iter_lines():
                if line == "event: token" and first is None:
                    first = time.perf_counter() - started
                if line.startswith("data: "):
                    last = line
        total = time.perf_counter() - started
    done = json.loads(last.removeprefix("data: "))
    assert done["turn"] == 1 and first is not None and first < total
