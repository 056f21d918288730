"""OpenAPI entries for the error responses, shared by the routers."""

from typing import Any

from app.schemas import ErrorResponse

_MEANINGS = {
    404: "unknown session",
    409: "another turn of this session is in progress (see Retry-After)",
    413: "body or text over its limit",
    415: "unsupported content type",
    422: "invalid or empty request",
    503: "models loading or Redis unreachable (see Retry-After)",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse, "description": _MEANINGS[status]} for status in statuses}
