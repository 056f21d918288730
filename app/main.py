"""App factory: `create_app(settings)`; the lifespan opens the store and loads the models."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api import ops, sessions, turns
from app.config import Settings
from app.errors import install_error_handlers
from app.limits import BodySizeLimit
from app.metrics import Metrics
from app.runtime import Runtime
from app.store import EmbeddedRedis, RedisSessionStore, connect

log = logging.getLogger(__name__)

DESCRIPTION = """Multi-turn multimodal dialogue service.

Create a session, then send turns to it. The reply comes with the tracked
dialogue state (intent, slots and where each came from, sentiment). Add
`?stream=true` (or `Accept: text/event-stream`) to a turn to receive the reply as
server-sent events: `token` events, then one `done` event with the full response;
when the model's wording dropped or invented a fact, a `replace` event with the
policy's wording comes before `done` (show it instead of the streamed tokens).
Every error has the shape `{"error": {"code": "...", "message": "..."}}`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(title="Parley", version="0.1.0", description=DESCRIPTION, lifespan=_lifespan)
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)
    for router in (sessions.router, turns.router, ops.router):
        app.include_router(router)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    _configure_logging(settings.log_level)
    embedded = None
    url = settings.redis_url
    if url is None:
        embedded = EmbeddedRedis(settings.data_dir / "redis")
        url = embedded.url
        log.info("PARLEY_REDIS_URL is not set: started an embedded Redis at %s", url)
    store = RedisSessionStore(
        connect(url, socket_timeout_s=settings.redis_timeout_s),
        prefix=settings.redis_prefix, ttl_s=settings.session_ttl_s, history_max=settings.history_max,
        lock_ttl_ms=settings.lock_ttl_ms, lock_wait_ms=settings.lock_wait_ms,
        idempotency_ttl_s=settings.idempotency_ttl_s,
    )
    runtime = Runtime(settings, store)
    app.state.runtime = runtime
    # Models load in the background so /healthz answers (and /readyz says 503) meanwhile.
    app.state.loading = asyncio.create_task(asyncio.to_thread(runtime.load))
    try:
        yield
    finally:
        await store.close()
        if embedded is not None:
            embedded.close()


def _configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root.setLevel(level.upper())
