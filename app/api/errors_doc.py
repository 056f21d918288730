"""OpenAPI entries for the error responses, shared by the routers."""

from typing import Any

from app.schemas import ErrorResponse
from app.api.openai.protocol import OpenAIErrorResponse

_MEANINGS = {
    400: "malformed request (OpenAI-compatible routes: the schema or a message is wrong)",
    401: "missing or invalid API key",
    404: "unknown session",
    409: "another turn of this session is in progress (see Retry-After), or a newer Parley stored the session",
    410: "the session was stored by an older Parley that this server can no longer read",
    413: "body or text over its limit",
    415: "unsupported content type",
    422: "invalid or empty request",
    429: "over the tenant's rate limit (see Retry-After)",
    503: "models loading or Redis unreachable (see Retry-After)",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Native routes: {"error": {"code", "message"}}."""
    return {status: {"model": ErrorResponse, "description": _MEANINGS[status]} for status in statuses}


def openai_errors(*statuses: int, meanings: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAI-compatible routes: {"error": {"message", "type", "param", "code"}}."""
    said = {**_MEANINGS, **(meanings or {})}
    return {status: {"model": OpenAIErrorResponse, "description": said[status]} for status in statuses}
