"""Dependencies, as Annotated aliases so that route signatures read as requirements."""

from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.errors import ApiError
from app.metrics import Metrics
from app.pipeline import TurnPipeline
from app.runtime import Runtime
from app.store import SessionStore

DEFAULT_TENANT = "default"


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


def get_tenant() -> str:
    return DEFAULT_TENANT


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[SessionStore, Depends(get_store)]
PipelineDep = Annotated[TurnPipeline, Depends(get_pipeline)]
TenantDep = Annotated[str, Depends(get_tenant)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
