"""Tracing of HTTP requests: one SERVER span per /v1 request (the tracer and spans: app/observability/tracing.py)."""

from __future__ import annotations

from opentelemetry.trace import Span, Status, StatusCode, Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability.tracing import request_span

TRACED_PATHS = ("/v1/",)  # the API; health probes, metrics scrapes and the chat page's files are not traced


class TraceRequests:
    """ASGI middleware: each /v1 request as a SERVER span, continuing the caller's trace when a valid
    `traceparent` header came with it; the app's tracer is current for everything the request runs."""

    def __init__(self, app: ASGIApp, *, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(TRACED_PATHS):
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        status = 500  # unless a response starts
        attributes = {"http.request.method": method, "url.path": scope["path"]}

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with request_span(self.tracer, method, headers=carrier, attributes=attributes) as server_span:
            try:
                await self.app(scope, receive, send_status)
            finally:
                _describe(server_span, scope, status)


def _describe(server_span: Span, scope: Scope, status: int) -> None:
    """Name the request's span after its route template once routing has run (e.g. "POST
    /v1/sessions/{session_id}/turns": one name per route, whatever the ids), and record the status."""
    route = getattr(scope.get("route"), "path", None)
    if route is not None:
        server_span.update_name(f"{scope['method']} {route}")
        server_span.set_attribute("http.route", route)
    server_span.set_attribute("http.response.status_code", status)
    if status >= 500:
        server_span.set_status(Status(StatusCode.ERROR))
