"""App factory: `create_app(settings)`; the lifespan opens the store and loads the models."""

from __future__ import annotations

import asyncio
import logging
import logging.config
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from app.api import ops, sessions, turns, web
from app.api.deps import get_tenant
from app.api.errors import install_error_handlers
from app.api.errors_doc import errors
from app.api.middleware.body_limit import BodySizeLimit
from app.api.middleware.observe import RequestObserver
from app.api.middleware.tracing import TraceRequests
from app.api.middleware.worker_header import WorkerHeader
from app.api.openai import routes as openai_routes
from app.api.openai import transcriptions
from app.config import Settings
from app.observability.logs import install_request_ids, logging_config
from app.observability.metrics import Metrics
from app.observability.redaction import install_redaction
from app.observability.tracing import tracing_from_settings
from app.security.auth import open_mode_warning
from app.security.ratelimit import RateLimiter, limits_from_settings
from app.store.embedded import EmbeddedRedis
from app.store.redis import RedisSessionStore, connect
from app.wiring import ModelLoader, Runtime

log = logging.getLogger(__name__)

DESCRIPTION = """Multi-turn multimodal dialogue service.

Create a session, then send turns to it. The reply comes with the tracked
dialogue state (intent, slots and where each came from, sentiment). Add
`?stream=true` (or `Accept: text/event-stream`) to a turn to receive the reply as
server-sent events: `token` events, then one `done` event with the full response;
when the model's wording dropped or invented a fact, a `replace` event with the
policy's wording comes before `done` (show it instead of the streamed tokens).
Every error has the shape `{"error": {"code": "...", "message": "..."}}`, except on the OpenAI-compatible
routes (`/v1/chat/completions`, `/v1/models`, `/v1/audio/transcriptions`), which answer in OpenAI's shape
`{"error": {"message": "...", "type": "...", "param": ..., "code": "..."}}` so that OpenAI clients understand them.
"""


def create_app(settings: Settings | None = None, *, model_overrides: dict[str, ModelLoader] | None = None) -> FastAPI:
    """`model_overrides`: model name -> loader used instead of the configured model (see Runtime.overrides)."""
    settings = settings or Settings()
    install_redaction()  # no email, phone or card number reaches a log line
    install_request_ids()  # every log line of a request carries its X-Request-Id
    app = FastAPI(title="Parley", version="0.1.0", description=DESCRIPTION, lifespan=_lifespan)
    app.state.settings = settings
    app.state.model_overrides = model_overrides or {}
    app.state.auth = settings.accepted_api_keys()  # a bad key list fails here, before serving
    app.state.metrics = Metrics()
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(WorkerHeader)
    app.state.tracing = tracing_from_settings(settings.tracing, version=app.version)
    if app.state.tracing.enabled:  # off: no middleware, and every span in the code is a no-op span
        app.add_middleware(TraceRequests, tracer=app.state.tracing.tracer)
    app.add_middleware(RequestObserver, metrics=app.state.metrics)  # added last: outermost, sees every answer
    install_error_handlers(app)
    # Authentication and rate limits run before a body is parsed or a model is asked for.
    for router in (sessions.router, turns.router):
        app.include_router(router, dependencies=[Depends(get_tenant)], responses=errors(401, 422, 429))
    app.include_router(openai_routes.router, dependencies=[Depends(get_tenant)])
    app.include_router(transcriptions.router, dependencies=[Depends(get_tenant)])
    app.include_router(ops.router)
    app.include_router(web.router)  # the chat page: no key needed to load it, its API calls send one
    app.mount("/static", web.static_files(), name="static")
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    _configure_logging(settings)
    if warning := open_mode_warning(app.state.auth):
        log.warning(warning)
    embedded = None
    url = settings.redis_url
    if url is None:
        embedded = EmbeddedRedis(settings.data_dir / "redis")
        url = embedded.url
        log.info("PARLEY_REDIS_URL is not set: started an embedded Redis at %s", url)
    redis = connect(url, socket_timeout_s=settings.redis_timeout_s)
    app.state.rate_limiter = RateLimiter(redis, prefix=settings.redis_prefix, limits=limits_from_settings(settings))
    store = RedisSessionStore(
        redis,
        prefix=settings.redis_prefix, ttl_s=settings.session_ttl_s, history_max=settings.history_max,
        lock_ttl_ms=settings.lock_ttl_ms, lock_wait_ms=settings.lock_wait_ms,
        idempotency_ttl_s=settings.idempotency_ttl_s,
    )
    runtime = Runtime(settings, store, app.state.metrics, overrides=app.state.model_overrides)
    app.state.runtime = runtime
    # Models load in the background so /healthz answers (and /readyz says 503) meanwhile.
    app.state.loading = asyncio.create_task(asyncio.to_thread(runtime.load))
    try:
        yield
    finally:
        # A load still running must end before the models are dropped (its failure was logged already).
        await asyncio.gather(app.state.loading, return_exceptions=True)
        await runtime.aclose()
        await store.close()
        if embedded is not None:
            embedded.close()
        app.state.tracing.shutdown()


def _configure_logging(settings: Settings) -> None:
    """`parley serve` configured logging before start-up (app/cli/main.py); an embedding host may have too."""
    root = logging.getLogger()
    if not root.handlers:
        logging.config.dictConfig(logging_config(settings.log_format, settings.log_level))
    root.setLevel(settings.log_level.upper())
