"""The webhook client against a real HTTP server on loopback: signing, retries, timeouts, bad answers."""

import time
from collections.abc import AsyncIterator

import pytest

from app.dialogue.actions import Conversation, WebhookClient, sign, verify_signature, worst_case_s
from app.dialogue.domain import ActionSpec
from app.dialogue.state import DialogueState
from tests.readme import readme_block
from tests.webhooks import Reply, backend_server

SECRET = b"test-secret-for-webhooks"
WHO = Conversation(session_id="s-1", tenant="acme")
STATE = DialogueState(intent="order_status", slots={"order_id": "A7Q-4412"}, turns=2)
HISTORY = [{"role": "user", "text": f"message {i}", "turn": i, "at": "2026-11-23T10:00:00Z",
            "images": [{"ocr_text": "x"}]} for i in range(10)]
SHIPPED = {"slots": {"order_status": "shipped", "delivery_date": "Friday"}, "facts": {"carrier": "DHL"}}


@pytest.fixture(scope="module")
def backend():
    with backend_server(SECRET) as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[WebhookClient]:
    webhooks = WebhookClient(SECRET, backoff_s=0.01)
    yield webhooks
    await webhooks.aclose()


def action(url: str, **overrides) -> ActionSpec:
    spec = {"name": "order_lookup", "url": url, "timeout_s": 2.0, "retries": 2,
            "provides": ("order_status", "delivery_date")}
    return ActionSpec(**{**spec, **overrides})


async def test_answer_fills_slots_and_facts_and_the_request_is_signed(backend, client):
    url = backend.script("/ok", Reply(json=SHIPPED))
    result = await client.call_action(action(url), WHO, STATE, HISTORY)
    assert result.ok
    assert result.slots == {"order_status": "shipped", "delivery_date": "Friday"}
    assert result.facts == {"carrier": "DHL"}
    [request] = backend.requests("/ok")
    assert request.signature_ok
    payload = request.payload
    assert payload["event"] == "action" and payload["action"] == "order_lookup"
    assert (payload["session_id"], payload["tenant"], payload["intent"]) == ("s-1", "acme", "order_status")
    assert payload["slots"] == {"order_id": "A7Q-4412"}
    assert [e["text"] for e in payload["history"]] == [f"message {i}" for i in range(4, 10)]  # recent only
    assert all("images" not in e for e in payload["history"])


async def test_signature_checks_the_body_the_secret_and_the_time(backend, client):
    url = backend.script("/sig", Reply(json=SHIPPED))
    await client.call_action(action(url), WHO, STATE, HISTORY)
    [request] = backend.requests("/sig")
    timestamp, signature = request.headers["x-parley-timestamp"], request.headers["x-parley-signature"]
    assert verify_signature(SECRET, timestamp=timestamp, body=request.body, signature=signature)
    assert not verify_signature(b"another-secret", timestamp=timestamp, body=request.body, signature=signature)
    assert not verify_signature(SECRET, timestamp=timestamp, body=request.body + b" ", signature=signature)
    # A captured request replayed later, even re-signed with its old timestamp, is refused.
    assert not verify_signature(SECRET, timestamp=timestamp, body=request.body, signature=signature,
                                now=int(timestamp) + 3600)
    assert signature == sign(SECRET, timestamp, request.body)


async def test_slow_backend_times_out_then_the_retry_succeeds(backend, client):
    url = backend.script("/slow", Reply(json=SHIPPED, stall_s=3.0), Reply(json=SHIPPED))
    result = await client.call_action(action(url, timeout_s=0.3), WHO, STATE, HISTORY)
    assert result.ok and result.slots["order_status"] == "shipped"
    requests = backend.requests("/slow")
    assert len(requests) == 2
    # One delivery id across the retries, so the backend can tell it is the same call.
    assert len({r.headers["x-parley-delivery"] for r in requests}) == 1
    assert all(r.signature_ok for r in requests)


async def test_failing_backend_is_tried_a_bounded_number_of_times(backend, client):
    url = backend.script("/down", Reply(500, {"error": "db down"}))
    result = await client.call_action(action(url, retries=2), WHO, STATE, HISTORY)
    assert not result.ok and result.slots == {}
    assert len(backend.requests("/down")) == 3  # 1 + 2 retries, then it gives up


async def test_5xx_then_success_recovers(backend, client):
    url = backend.script("/flaky", Reply(503), Reply(502), Reply(json=SHIPPED))
    result = await client.call_action(action(url), WHO, STATE, HISTORY)
    assert result.ok and len(backend.requests("/flaky")) == 3


async def test_a_body_that_does_not_decode_is_a_failure_not_a_crash(backend, client):
    url = backend.script("/garbled", Reply(raw=b"not gzip at all", encoding="gzip"))
    result = await client.call_action(action(url, retries=1), WHO, STATE, HISTORY)
    assert not result.ok and result.slots == {}
    assert len(backend.requests("/garbled")) == 2  # treated like a transport failure: retried, then given up


async def test_client_errors_are_not_retried(backend, client):
    url = backend.script("/refused", Reply(400, {"error": "unknown order"}))
    result = await client.call_action(action(url), WHO, STATE, HISTORY)
    assert not result.ok and len(backend.requests("/refused")) == 1


async def test_nothing_listening_fails_after_the_retries(client):
    with backend_server(SECRET) as closed:
        url = closed.base + "/gone"
    started = time.monotonic()
    result = await client.call_action(action(url, retries=1), WHO, STATE, HISTORY)
    assert not result.ok
    assert time.monotonic() - started < 10  # bounded: no hang on a dead port (a loose limit, not a timing test)


@pytest.mark.parametrize("reply", [
    Reply(raw=b"<html>oops</html>"),
    Reply(raw=b"\xff\xfe not utf-8"),
    Reply(json=["shipped"]),
    Reply(json={"slots": "shipped"}),
    Reply(json={"slots": {"order_status": 3, "delivery_date": "Friday"}}),
    Reply(json={"slots": {"order_status": "shipped"}}),  # delivery_date is promised by the domain
    Reply(json={"slots": {"order_status": "x" * 301, "delivery_date": "Friday"}}),
    Reply(json={"slots": {"order_status": "shipped\u0000", "delivery_date": "Friday"}}),
    Reply(json={**SHIPPED, "facts": {f"f{i}": "v" for i in range(40)}}),
    Reply(raw=b'{"slots": {"order_status": "shipped", "delivery_date": "Friday"}, "pad": "' + b"x" * 70_000 + b'"}'),
], ids=["html", "bad-utf8", "list", "slots-not-object", "number", "missing-slot", "long", "control-char",
        "too-many", "too-big"])
async def test_bad_answers_count_as_failures_and_are_not_retried(backend, client, reply):
    url = backend.script("/bad", reply)
    result = await client.call_action(action(url), WHO, STATE, HISTORY)
    assert not result.ok
    assert len(backend.requests("/bad")) == 1


async def test_undeclared_slots_are_dropped(backend, client):
    url = backend.script("/extra", Reply(json={"slots": {**SHIPPED["slots"], "order_id": "EVIL-1"}}))
    result = await client.call_action(action(url), WHO, STATE, HISTORY)
    assert result.ok and "order_id" not in result.slots


async def test_handoff_sends_the_whole_transcript_and_state(backend):
    url = backend.script("/handoff", Reply(204, raw=b""))
    client = WebhookClient(SECRET, handoff_url=url, backoff_s=0.01)
    state = STATE.model_copy(update={"handed_off": True})
    assert (await client.hand_over(WHO, state, HISTORY)).ok
    await client.aclose()
    [request] = backend.requests("/handoff")
    assert request.signature_ok
    payload = request.payload
    assert payload["event"] == "handoff" and payload["state"]["handed_off"] is True
    assert [e["text"] for e in payload["transcript"]] == [f"message {i}" for i in range(10)]


async def test_handoff_to_a_failing_backend_reports_failure(backend):
    url = backend.script("/handoff-down", Reply(500))
    client = WebhookClient(SECRET, handoff_url=url, backoff_s=0.01)
    assert not (await client.hand_over(WHO, STATE, HISTORY)).ok
    await client.aclose()
    assert len(backend.requests("/handoff-down")) == 3


def test_a_secret_is_required():
    with pytest.raises(ValueError, match="PARLEY_ACTION_SECRET"):
        WebhookClient(b"")


async def test_readme_verification_snippet_accepts_parley_requests_and_refuses_others(backend, client):
    namespace: dict = {}
    exec(readme_block("webhook-verification"), namespace)  # noqa: S102 - our own README's example
    check = namespace["parley_signature_ok"]
    url = backend.script("/readme", Reply(json=SHIPPED))
    await client.call_action(action(url), WHO, STATE, HISTORY)
    [request] = backend.requests("/readme")
    timestamp, signature = request.headers["x-parley-timestamp"], request.headers["x-parley-signature"]
    assert check(SECRET, timestamp, signature, request.body)
    assert not check(SECRET, timestamp, signature, request.body.replace(b"4412", b"4413"))
    assert not check(b"wrong", timestamp, signature, request.body)
    assert not check(SECRET, str(int(timestamp) - 3600), sign(SECRET, str(int(timestamp) - 3600), request.body),
                     request.body)


def test_worst_case_counts_every_attempt_and_backoff():
    assert worst_case_s(2.0, 0) == 2.0
    assert worst_case_s(2.0, 2, backoff_s=0.25) == 6.0 + 0.5 + 1.0
