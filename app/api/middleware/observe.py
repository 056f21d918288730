"""Per-request observation, outermost of the app's middleware: a request id for the logs and the response,
request counts and latency per route template and status, and one access log line.

The id comes from the client's `X-Request-Id` when it is a sane token (so a caller can follow its own id
through our logs), otherwise it is generated; it is answered in the `X-Request-Id` response header.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability.logs import request_id
from app.observability.metrics import Metrics

HEADER = b"x-request-id"
VALID_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")  # printable, no spaces or quotes: safe in logs and headers
UNMATCHED = "(unmatched)"  # the route label of a 404 path: one label, whatever was asked for

log = logging.getLogger("parley.access")


class RequestObserver:
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(HEADER, b"")
        rid = given.decode() if VALID_ID.fullmatch(given) else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500  # unless a response starts

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (HEADER, rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", UNMATCHED)  # the template, e.g. /v1/sessions/{session_id}
            self.metrics.observe_request(scope["method"], route, status, seconds)
            log.info("%s %s %d", scope["method"], route, status,
                     extra={"method": scope["method"], "route": route, "status": status,
                            "duration_ms": round(seconds * 1000, 1)})
            request_id.reset(token)
