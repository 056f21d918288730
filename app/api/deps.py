"""Dependencies, as Annotated aliases so that route signatures read as requirements."""

from typing import Annotated

from fastapi import Depends, Request, Response

from app.security.auth import DEFAULT_TENANT, ApiKeys
from app.security.client_address import client_key
from app.config import Settings
from app.api.errors import ApiError
from app.observability.metrics import Metrics
from app.pipeline import TurnPipeline
from app.security.ratelimit import RateLimiter
from app.wiring import Runtime
from app.store.base import _SESSION_ID, SessionStore  # the store's own id rule: ids it could never have issued


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(runtime: Annotated[Runtime, Depends(get_runtime)]) -> SessionStore:
    return runtime.store


def get_pipeline(runtime: Annotated[Runtime, Depends(get_runtime)]) -> TurnPipeline:
    if runtime.pipeline is None:
        detail = f"model loading failed: {runtime.load_error}" if runtime.load_error else "models are still loading"
        raise ApiError(503, "not_ready", f"{detail}; see GET /readyz", headers={"Retry-After": "5"})
    return runtime.pipeline


def get_auth(request: Request) -> ApiKeys:
    return request.app.state.auth


def get_rate_limiter(request: Request) -> RateLimiter:
    return request.app.state.rate_limiter


UNAUTHORIZED = "missing or invalid API key: send the header 'Authorization: Bearer <key>'"


async def get_tenant(request: Request, response: Response) -> str:
    """Authenticate the request (open mode: tenant "default"), then count it against the rate limits.

    Every /v1 route depends on this (TenantDep); FastAPI runs it once per request. Over a limit
    -> 429 rate_limited naming the limit; the X-RateLimit-* headers of the limit with least room go on the answer.
    """
    keys = get_auth(request)
    if keys.open:
        tenant = DEFAULT_TENANT
    else:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        found = keys.tenant_for(credentials.strip()) if scheme.lower() == "bearer" and credentials.strip() else None
        if found is None:
            raise ApiError(401, "unauthorized", UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
        tenant = found
    await _count_request(request, response, tenant)
    return tenant


async def _count_request(request: Request, response: Response, tenant: str) -> None:
    path = request.url.path.rstrip("/")
    turn = request.method == "POST" and (path.endswith("/turns") or path == "/v1/chat/completions")  # both run one
    session = (request.path_params.get("session_id") or request.headers.get("x-session-id")) if turn else None
    client = client_key(request.client.host if request.client else None, request.headers.getlist("x-forwarded-for"),
                        trusted=get_settings(request).trusted_proxy_networks)
    verdict = await get_rate_limiter(request).check(
        tenant=tenant, client=client, turn=turn,
        session=session if session is not None and _SESSION_ID.match(session) else None)  # others answer 404
    if verdict is None:
        return
    if not verdict.allowed:
        raise ApiError(429, "rate_limited", f"rate limit reached: {verdict.limit.describe()}; retry after "
                       f"{verdict.retry_after_s} s", headers={"Retry-After": str(verdict.retry_after_s),
                                                              **verdict.headers()})
    response.headers.update(verdict.headers())


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[SessionStore, Depends(get_store)]
PipelineDep = Annotated[TurnPipeline, Depends(get_pipeline)]
TenantDep = Annotated[str, Depends(get_tenant)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
