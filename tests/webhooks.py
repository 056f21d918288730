"""A real customer-service backend for webhook tests: http.server on a loopback port, in a thread.

Each path has a script of behaviours, one per request (the last repeats): answer JSON, answer a status,
answer garbage, or stall. Every request is recorded with its headers and raw body, and its signature is
checked here, independently of app/dialogue/actions.py, the way a receiver would.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    status: int = 200
    json: object = None  # sent as JSON when `raw` is None
    raw: bytes | None = None
    stall_s: float = 0.0  # sleep before answering: a slow backend
    encoding: str | None = None  # a Content-Encoding header to declare (whether or not the body is encoded so)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


@dataclass
class Backend:
    secret: bytes
    base: str = ""
    scripts: dict[str, list[Reply]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, path: str, *replies: Reply) -> str:
        """Set what `path` answers (in order; the last repeats) and forget its earlier requests; returns its URL."""
        with self.lock:
            self.scripts[path] = list(replies)
            self.received = [r for r in self.received if r.path != path]
        return self.base + path

    def requests(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def _next(self, path: str, request: Received) -> Reply:
        with self.lock:
            self.received.append(request)
            script = self.scripts.get(path) or [Reply(404, {"error": "no such path"})]
            return script.pop(0) if len(script) > 1 else script[0]


def signature_ok(secret: bytes, headers: dict[str, str], body: bytes) -> bool:
    """A receiver's check, written out by hand: HMAC-SHA256 of "<timestamp>.<body>", timestamp within 5 min."""
    timestamp = headers.get("x-parley-timestamp", "")
    expected = "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= 300
    return fresh and hmac.compare_digest(expected, headers.get("x-parley-signature", ""))


@contextmanager
def backend_server(secret: bytes) -> Iterator[Backend]:
    backend = Backend(secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {key.lower(): value for key, value in self.headers.items()}
            reply = backend._next(self.path, Received(self.path, headers, body, signature_ok(secret, headers, body)))
            time.sleep(reply.stall_s)
            data = reply.raw if reply.raw is not None else json.dumps(reply.json).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                if reply.encoding:
                    self.send_header("Content-Encoding", reply.encoding)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                return  # the client gave up on a stalled answer, as it should

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    backend.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield backend
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
