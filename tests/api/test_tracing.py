"""OpenTelemetry tracing through the app: the span tree of text, image and voice turns, a caller's traceparent
continued, the trace carried on to a webhook backend (a real one on loopback), and nothing traced when off.

Every request here sends a traceparent of its own, so a test reads exactly the spans of its request's trace
from the SDK's in-memory exporter."""

import base64
import secrets
import sys
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from app.config import Settings
from app.api.middleware.tracing import TraceRequests
from app.observability.tracing import OTLP_MODULE
from tests.api.inprocess import asgi_client, in_process_app
from tests.api.test_actions import SECRET, SHIPPED, domain_with_lookup
from tests.samples import document, encoded, speech_wav
from tests.server import unique_prefix
from tests.webhooks import Backend, Reply, backend_server

RECEIPT_PNG = encoded(document(["ACME STORE", "Order No: A7Q-4412"]))
TURN_ROUTE = "POST /v1/sessions/{session_id}/turns"
TURN_STEPS = ["lock", "load", "encode.text", "track", "policy", "decode", "commit"]  # a text turn, in order


@pytest.fixture(scope="module")
def backend() -> Backend:
    with backend_server(SECRET.encode()) as server:
        yield server


def webhook_settings(api_settings: Settings, backend: Backend, tmp_path_factory, *, tracing: str) -> Settings:
    """The API tests' settings with order_status bound to the backend's /orders (tests/api/test_actions.py)."""
    return api_settings.model_copy(update={
        "redis_prefix": unique_prefix(), "tracing": tracing, "tts": "off",
        "domain_path": domain_with_lookup(tmp_path_factory.mktemp("domain"), backend.base),
        "action_secret": Settings(action_secret=SECRET).action_secret,
    })


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
async def traced_app(api_settings, backend, tmp_path_factory, exporter) -> AsyncIterator[FastAPI]:
    """PARLEY_TRACING=console, plus the in-memory exporter beside the console one."""
    settings = webhook_settings(api_settings, backend, tmp_path_factory, tracing="console")
    async with in_process_app(settings) as application:
        application.state.tracing.provider.add_span_processor(SimpleSpanProcessor(exporter))
        yield application


@pytest.fixture
async def http(traced_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(traced_app) as client:
        yield client


def traceparent() -> tuple[str, str, str]:
    """A caller's W3C traceparent header and its trace and span ids (hex)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def spans_of(exporter: InMemorySpanExporter, trace_id: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if f"{s.context.trace_id:032x}" == trace_id]


def tree(spans: list[ReadableSpan]) -> dict[str, str | None]:
    """span name -> its parent's name (None for the request's span, whose parent is the caller's)."""
    names = {s.context.span_id: s.name for s in spans}
    assert len(names) == len(spans)
    found = {s.name: names.get(s.parent.span_id) if s.parent else None for s in spans}
    assert len(found) == len(spans), f"a span name repeats: {sorted(s.name for s in spans)}"
    return found


def children(spans: list[ReadableSpan], parent: str) -> list[str]:
    """Names of `parent`'s children, in the order they started."""
    by_id = {s.context.span_id: s for s in spans}
    kids = [s for s in spans if s.parent and by_id.get(s.parent.span_id) and by_id[s.parent.span_id].name == parent]
    return [s.name for s in sorted(kids, key=lambda s: s.start_time)]


async def turn(http: httpx.AsyncClient, exporter: InMemorySpanExporter, session: str, **body) -> list[ReadableSpan]:
    header, trace_id, _ = traceparent()
    response = await http.post(f"/v1/sessions/{session}/turns", headers={"traceparent": header}, **body)
    assert response.status_code == 200, response.text
    return spans_of(exporter, trace_id)


async def new_session(http: httpx.AsyncClient) -> str:
    return (await http.post("/v1/sessions")).json()["id"]


async def test_text_turn_span_tree(http, exporter):
    spans = await turn(http, exporter, await new_session(http), json={"text": "hello there"})
    assert children(spans, TURN_ROUTE) == ["turn"]
    assert children(spans, "turn") == TURN_STEPS
    assert all(not children(spans, step) for step in TURN_STEPS)
    request = next(s for s in spans if s.name == TURN_ROUTE)
    assert request.kind is SpanKind.SERVER and request.attributes["http.response.status_code"] == 200
    done = next(s for s in spans if s.name == "turn")
    assert done.attributes["parley.turn"] == 1 and list(done.attributes["parley.modalities"]) == ["text"]
    decode = next(s for s in spans if s.name == "decode")
    assert [event.name for event in decode.events] == ["first_token"]
    assert decode.start_time <= decode.events[0].timestamp <= decode.end_time


async def test_image_turn_span_tree(http, exporter):
    files = {"image": ("receipt.png", RECEIPT_PNG, "image/png")}
    spans = await turn(http, exporter, await new_session(http), data={"text": "my lamp arrived broken, here is the receipt"}, files=files)
    assert children(spans, TURN_ROUTE) == ["media.decode", "turn"]
    assert children(spans, "turn") == ["lock", "load", "perceive", *TURN_STEPS[2:]]
    assert children(spans, "perceive") == ["encode.vision"]
    assert tree(spans)["encode.vision"] == "perceive"
    assert next(s for s in spans if s.name == "encode.vision").attributes["parley.images"] == 1


async def test_voice_turn_span_tree(http, exporter):
    clip = base64.b64encode(speech_wav("I want to check my order")).decode()
    spans = await turn(http, exporter, await new_session(http), json={"audio": {"data": clip}})
    assert children(spans, TURN_ROUTE) == ["media.decode", "turn"]
    # The transcript is text too: the text encoder embeds it.
    assert children(spans, "turn") == ["lock", "load", "perceive", *TURN_STEPS[2:]]
    assert children(spans, "perceive") == ["encode.speech"]


async def test_transcription_span_tree(http, exporter):
    header, trace_id, _ = traceparent()
    response = await http.post("/v1/audio/transcriptions", headers={"traceparent": header},
                               files={"file": ("q.wav", speech_wav("hello"), "audio/wav")})
    assert response.status_code == 200, response.text
    assert tree(spans_of(exporter, trace_id)) == {"POST /v1/audio/transcriptions": None,
                                                  "media.decode": "POST /v1/audio/transcriptions",
                                                  "encode.speech": "POST /v1/audio/transcriptions"}


async def test_the_callers_traceparent_is_continued(http, exporter):
    header, trace_id, caller_span = traceparent()
    response = await http.post("/v1/sessions", headers={"traceparent": header})
    assert response.status_code == 201
    [request] = spans_of(exporter, trace_id)
    assert request.name == "POST /v1/sessions" and f"{request.parent.span_id:016x}" == caller_span
    assert request.parent.is_remote


async def test_without_traceparent_a_new_trace_starts(http, exporter):
    exporter.clear()
    assert (await http.get("/v1/sessions/no-such-session")).status_code == 404
    [request] = exporter.get_finished_spans()
    assert request.parent is None and request.name == "GET /v1/sessions/{session_id}"
    assert request.attributes["http.response.status_code"] == 404


async def test_the_webhook_call_carries_the_trace_on(http, exporter, backend):
    backend.script("/orders", Reply(json=SHIPPED))
    session = await new_session(http)
    await turn(http, exporter, session, json={"text": "where is my order?"})
    spans = await turn(http, exporter, session, json={"text": "the order number is 4512"})
    assert "action" in children(spans, "turn")
    action = next(s for s in spans if s.name == "action")
    assert action.attributes["parley.action"] == "order_lookup"
    [received] = backend.requests("/orders")
    version, trace_id, parent, flags = received.headers["traceparent"].split("-")
    assert (version, flags) == ("00", "01")
    assert int(trace_id, 16) == action.context.trace_id and int(parent, 16) == action.context.span_id
    assert received.signature_ok


async def test_a_refused_turn_records_the_error(http, exporter):
    header, trace_id, _ = traceparent()
    response = await http.post(f"/v1/sessions/{await new_session(http)}/turns", headers={"traceparent": header},
                               json={"audio": {"data": base64.b64encode(b"not audio").decode()}})
    assert response.status_code == 422
    spans = tree(spans_of(exporter, trace_id))
    assert spans == {TURN_ROUTE: None, "media.decode": TURN_ROUTE}  # refused before any turn ran
    decode = next(s for s in spans_of(exporter, trace_id) if s.name == "media.decode")
    assert not decode.status.is_ok and decode.events[0].name == "exception"


async def test_tracing_off_records_nothing_and_sends_no_traceparent(
    api_settings, backend, tmp_path_factory, exporter, traced_app,
):
    settings = webhook_settings(api_settings, backend, tmp_path_factory, tracing="off")
    async with in_process_app(settings) as application, asgi_client(application) as client:
        assert not application.state.tracing.enabled
        assert not any(m.cls is TraceRequests for m in application.user_middleware)
        backend.script("/orders", Reply(json=SHIPPED))
        exporter.clear()
        session = (await client.post("/v1/sessions")).json()["id"]
        for text in ("where is my order?", "the order number is 4512"):
            response = await client.post(f"/v1/sessions/{session}/turns", json={"text": text},
                                         headers={"traceparent": traceparent()[0]})
            assert response.status_code == 200
    assert response.json()["state"]["slots"]["order_status"] == "shipped"  # the webhook was called...
    [received] = backend.requests("/orders")
    assert "traceparent" not in received.headers  # ...with no trace context, not even the caller's
    assert exporter.get_finished_spans() == ()
    # Nothing global was set either: a library's spans stay no-ops too.
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def test_otlp_without_its_exporter_fails_at_start_up(monkeypatch):
    monkeypatch.setitem(sys.modules, OTLP_MODULE, None)  # as if the otlp extra were not installed
    with pytest.raises(ValueError, match=r"pip install 'parley\[otlp\]'"):
        Settings(tracing="otlp")


def test_tracing_setting_takes_only_known_modes():
    with pytest.raises(ValueError, match="tracing"):
        Settings(tracing="jaeger")
