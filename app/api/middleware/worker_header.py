"""`X-Parley-Worker: <host>:<pid>` on every response: which replica and worker process answered
(several `parley serve --workers N` processes, or replicas behind a load balancer)."""

import os
import socket

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class WorkerHeader:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Read per process: uvicorn's workers are spawned, so each computes its own pid.
        self.value = f"{socket.gethostname()}:{os.getpid()}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-parley-worker", self.value)]
            await send(message)

        await self.app(scope, receive, send_with_header)
