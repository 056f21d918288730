"""The app run in-process for API tests (an ASGI client talks to it; no sockets)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from tests.server import delete_prefix


@asynccontextmanager
async def in_process_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with its lifespan run and its models loaded; every key under its prefix is deleted afterwards."""
    application = create_app(settings)
    try:
        async with LifespanManager(application, startup_timeout=120):
            await application.state.loading
            yield application
    finally:
        delete_prefix(settings.redis_url, settings.redis_prefix)


@asynccontextmanager
async def in_process_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of an in-process app on `settings` (see in_process_app)."""
    async with in_process_app(settings) as application, asgi_client(application) as client:
        yield client


def asgi_client(application: FastAPI, *, peer: str = "127.0.0.1") -> httpx.AsyncClient:
    """An HTTP client that talks to `application` in-process (no sockets); use it with `async with`.
    `peer`: the address the app sees the requests come from (the socket peer a server would report)."""
    transport = httpx.ASGITransport(app=application, client=(peer, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://parley")
