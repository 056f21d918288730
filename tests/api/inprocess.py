"""The app run in-process for API tests (an ASGI client talks to it; no sockets)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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
