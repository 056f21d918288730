"""Through a real uvicorn process: start-up, readiness, a turn and a streamed turn over HTTP."""

import json

import httpx
import pytest

from tests.factories import tiny_causal_lm
from tests.server import parley_test_server


@pytest.fixture(scope="module")
def server(redis_url, tmp_path_factory):
    decoder = tiny_causal_lm(tmp_path_factory.mktemp("decoder"))
    env = {
        "PARLEY_DECODER": str(decoder), "PARLEY_DECODER_MAX_NEW_TOKENS": "8", "PARLEY_MAX_BODY_BYTES": "1000000",
        "PARLEY_DATA_DIR": str(tmp_path_factory.mktemp("data")),
    }
    with parley_test_server(redis_url, log_dir=tmp_path_factory.mktemp("log"), env=env) as base:
        yield base


def test_turn_over_real_http(server):
    with httpx.Client(base_url=server, timeout=30) as http:
        session = http.post("/v1/sessions").json()["id"]
        reply = http.post(f"/v1/sessions/{session}/turns", json={"text": "where is my order A7Q-4412?"})
        assert reply.status_code == 200
        assert reply.json()["state"]["slots"]["order_id"] == "A7Q-4412"
        assert http.get(f"/v1/sessions/{session}/state").json()["turns"] == 1


def test_streaming_over_real_http(server):
    with httpx.Client(base_url=server, timeout=30) as http:
        session = http.post("/v1/sessions").json()["id"]
        with http.stream("POST", f"/v1/sessions/{session}/turns", json={"text": "hello"},
                         headers={"Accept": "text/event-stream"}) as response:
            lines = [line for line in response.iter_lines() if line.startswith(("event:", "data:"))]
    assert lines[0] == "event: token" and lines[-2] == "event: done"
    assert json.loads(lines[-1].removeprefix("data: "))["turn"] == 1


def test_errors_over_real_http(server):
    with httpx.Client(base_url=server, timeout=30) as http:
        missing = http.post("/v1/sessions/" + "a" * 32 + "/turns", json={"text": "hi"})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "session_not_found"
        big = http.post("/v1/sessions", content=b"{" + b" " * 2_000_000 + b"}", headers={"content-type": "application/json"})
        assert big.status_code == 413
