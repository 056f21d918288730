"""Operations: liveness, readiness, metrics."""

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from app.api.deps import MetricsDep, RuntimeDep
from app.schemas import Readiness

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (models may still be loading)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness, "description": "not ready"}})
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """200 once every model is loaded and Redis answers; 503 before, with each model's status."""
    redis_ok = await runtime.store.ping()
    body = Readiness(ready=runtime.pipeline is not None and redis_ok, redis=redis_ok, models=list(runtime.models.values()))
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get("/metrics", response_class=Response)
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus text format."""
    return Response(metrics.render(), media_type=metrics.content_type)
