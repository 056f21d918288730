"""Actions and handoff through the app: a real backend on loopback, signed requests, the turn always committed.

The tiny decoder writes nonsense, so every reply is the policy's own wording: what the reply says
comes from the domain's templates and the backend's answer.
"""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi import FastAPI

from app.config import Settings
from app.dialogue.domain import DEFAULT_DOMAIN_PATH, load_domain
from app.wiring import _webhooks
from tests.api.inprocess import asgi_client, in_process_app
from tests.server import unique_prefix
from tests.webhooks import Backend, Reply, backend_server

SECRET = "webhook-test-secret"
SHIPPED = {"slots": {"order_status": "shipped", "delivery_date": "Friday"}, "facts": {"carrier": "DHL"}}


@pytest.fixture(scope="module")
def backend() -> Backend:
    with backend_server(SECRET.encode()) as server:
        yield server


def domain_with_lookup(folder: Path, base: str) -> Path:
    """The packaged domain with order_status bound to the backend's /orders."""
    raw = yaml.safe_load(DEFAULT_DOMAIN_PATH.read_text())
    raw["actions"] = {"order_lookup": {"url": f"{base}/orders", "timeout_s": 2, "retries": 2,
                                       "provides": ["order_status", "delivery_date"]}}
    raw["intents"]["order_status"].update(
        action="order_lookup", response="Order {order_id} is {order_status} and should arrive {delivery_date}.")
    path = folder / "domain.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
async def actions_app(api_settings: Settings, backend: Backend, tmp_path_factory) -> AsyncIterator[FastAPI]:
    settings = api_settings.model_copy(update={
        "redis_prefix": unique_prefix(), "domain_path": domain_with_lookup(tmp_path_factory.mktemp("domain"), backend.base),
        "action_secret": Settings(action_secret=SECRET).action_secret, "handoff_url": f"{backend.base}/handoff",
        "tts": "off",  # and this app speaks no replies
    })
    async with in_process_app(settings) as application:
        yield application


@pytest.fixture
async def http(actions_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(actions_app) as client:
        yield client


async def new_session(http: httpx.AsyncClient) -> str:
    return (await http.post("/v1/sessions")).json()["id"]


async def say(http: httpx.AsyncClient, session: str, text: str, **extra) -> dict:
    response = await http.post(f"/v1/sessions/{session}/turns", json={"text": text, **extra})
    assert response.status_code == 200, response.text
    return response.json()


async def ask_order_status(http: httpx.AsyncClient, session: str) -> dict:
    asked = await say(http, session, "where is my order?")
    assert asked["action"] == "ask_slot" and asked["state"]["intent"] == "order_status"
    return await say(http, session, "the order number is 4512")


async def test_reply_states_the_order_status_from_the_backend(http, backend, actions_app):
    backend.script("/orders", Reply(json=SHIPPED))
    session = await new_session(http)
    result = await ask_order_status(http, session)
    assert result["action"] == "respond"
    assert result["reply"].startswith("Order 4512 is shipped and should arrive Friday.") and "DHL" in result["reply"]
    assert result["state"]["slots"]["order_status"] == "shipped"
    assert result["state"]["slot_sources"]["order_status"]["modality"] == "action"
    [request] = backend.requests("/orders")
    assert request.signature_ok  # checked by the backend with the shared secret
    payload = request.payload
    assert (payload["session_id"], payload["tenant"], payload["intent"]) == (session, "default", "order_status")
    assert payload["slots"] == {"order_id": "4512"}
    assert [e["text"] for e in payload["history"]][-3:] == [
        "where is my order?", "What is your order number?", "the order number is 4512"]


async def test_backend_down_gives_the_unavailable_reply_and_the_turn_is_committed(http, backend, actions_app):
    backend.script("/orders", Reply(500, {"error": "database down"}))
    session = await new_session(http)
    result = await ask_order_status(http, session)
    domain = actions_app.state.runtime.pipeline.domain
    assert result["action"] == "action_unavailable" and result["reply"] == domain.action_failed_response
    assert len(backend.requests("/orders")) == 3  # one try and two retries, no more
    detail = (await http.get(f"/v1/sessions/{session}")).json()
    assert [e["role"] for e in detail["history"]] == ["user", "assistant"] * 2
    assert detail["history"][-1]["text"] == domain.action_failed_response
    assert detail["state"]["slots"] == {"order_id": "4512"}  # nothing from a backend that did not answer
    assert detail["state"]["turns"] == 2

    backend.script("/orders", Reply(json=SHIPPED))  # it is back: asking again works
    again = await say(http, session, "where is my order?")
    assert again["action"] == "respond" and "shipped" in again["reply"]


async def test_slow_backend_is_retried_within_the_turn(http, backend):
    backend.script("/orders", Reply(json=SHIPPED, stall_s=5), Reply(json=SHIPPED))
    session = await new_session(http)
    result = await ask_order_status(http, session)
    assert result["action"] == "respond" and "shipped" in result["reply"]
    assert len(backend.requests("/orders")) == 2


async def test_handoff_sends_the_transcript_once_and_later_turns_say_a_person_will_answer(http, backend, actions_app):
    backend.script("/handoff", Reply(200, {"ticket": "T-1"}))
    domain = actions_app.state.runtime.pipeline.domain
    session = await new_session(http)
    await say(http, session, "hello, my order number is 4512")
    handed = await say(http, session, "I want to speak to a real person")
    assert handed["action"] == "handoff" and handed["reply"] == domain.handoff_response
    assert handed["state"]["handed_off"] and handed["state"]["handoff_notified"]
    later = await say(http, session, "are you still there?")
    assert later["reply"] == domain.handed_off_response
    [request] = backend.requests("/handoff")  # once, not on every later turn
    assert request.signature_ok
    payload = request.payload
    assert payload["event"] == "handoff" and payload["session_id"] == session
    assert [e["text"] for e in payload["transcript"] if e["role"] == "user"] == [
        "hello, my order number is 4512", "I want to speak to a real person"]
    assert payload["state"]["slots"]["order_id"] == "4512" and payload["state"]["handed_off"]


async def test_handoff_backend_down_says_so_and_delivers_on_a_later_turn(http, backend, actions_app):
    backend.script("/handoff", Reply(503))
    domain = actions_app.state.runtime.pipeline.domain
    session = await new_session(http)
    handed = await say(http, session, "get me a human agent")
    assert handed["reply"] == domain.handoff_failed_response
    assert handed["state"]["handed_off"] and not handed["state"]["handoff_notified"]
    assert len(backend.requests("/handoff")) == 3
    backend.script("/handoff", Reply(204, raw=b""))
    later = await say(http, session, "hello?")
    assert later["reply"] == domain.handed_off_response and later["state"]["handoff_notified"]
    assert len(backend.requests("/handoff")) == 1


async def test_spoken_reply_when_speech_is_off_is_refused_before_the_turn(http):
    session = await new_session(http)
    response = await http.post(f"/v1/sessions/{session}/turns", json={"text": "hello", "reply_audio": True})
    assert response.status_code == 422 and response.json()["error"]["code"] == "reply_audio_unavailable"
    assert (await http.get(f"/v1/sessions/{session}")).json()["history"] == []
    assert "tts" not in {model["name"] for model in (await http.get("/readyz")).json()["models"]}


def test_webhooks_need_the_secret_and_must_fit_under_the_session_lock(tmp_path):
    domain = load_domain(domain_with_lookup(tmp_path, "http://127.0.0.1:9"))
    with pytest.raises(ValueError, match="PARLEY_ACTION_SECRET is not set"):
        _webhooks(Settings(), domain)
    with pytest.raises(ValueError, match="PARLEY_ACTION_SECRET is not set"):
        _webhooks(Settings(handoff_url="http://127.0.0.1:9/handoff"), load_domain())
    with pytest.raises(ValueError, match="webhook 'order_lookup' can take 8 s"):
        _webhooks(Settings(action_secret=SECRET, lock_ttl_ms=10_000), domain)
    assert _webhooks(Settings(), load_domain()) is None  # nothing configured, nothing needed
    assert _webhooks(Settings(action_secret=SECRET), domain).secret == SECRET.encode()


async def test_an_angry_customer_is_handed_over_too(http, backend):
    backend.script("/handoff", Reply(200, {}))
    session = await new_session(http)
    handed = await say(http, session, "This is absolutely terrible, I hate this useless awful company")
    assert handed["state"]["sentiment"] == "negative" and handed["state"]["handed_off"]
    [request] = backend.requests("/handoff")
    assert request.payload["state"]["sentiment_score"] <= -0.6
