"""HTTP errors: the status of each domain error (app/errors.py), the store's and the remote decoder's, and
one error shape for every failure: {"error": {"code", "message"}}.

Except under the OpenAI-compatible paths, whose clients expect OpenAI's shape
{"error": {"message", "type", "param", "code"}}: the same errors, worded the same, shaped by path.
"""

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import ErrorKind, ParleyError
from app.store.base import (SessionBusy, SessionNotFound, SessionVersionUnsupported, StoreError, StoreUnavailable,
                            TurnConflict)
from models.remote import DecoderUnavailable

log = logging.getLogger(__name__)

BODY_PARSE_ERROR = "There was an error parsing the body"  # fastapi.routing's HTTPException(400) detail
RETRY_AFTER_S = 2  # Redis outages seen in practice are restarts or failovers of a few seconds
OPENAI_PATHS = ("/v1/chat/", "/v1/models", "/v1/audio/")  # answered in OpenAI's error shape
# OpenAI's error `type` by status; anything else 4xx is an invalid request.
OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                429: "rate_limit_error"}
# The status of each kind of domain error. `unsatisfiable` comes from OpenAI requests only (a tool_choice the
# conversation cannot satisfy), answered 400 as OpenAI does.
KIND_STATUS: dict[ErrorKind, int] = {"invalid": 422, "unsatisfiable": 400, "too_large": 413, "unsupported_media": 415}


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None, param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}
        self.param = param  # the request field at fault, where known (OpenAI's error shape shows it)


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None, *, path: str = "",
    param: str | None = None,
) -> JSONResponse:
    """The error as JSON; under OPENAI_PATHS in OpenAI's shape, where a schema violation is a 400 as there."""
    if not path.startswith(OPENAI_PATHS):
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)
    if status == 422 and code == "invalid_request":
        status = 400
    kind = OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"message": message, "type": kind, "param": param, "code": code}
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def as_api_error(exc: Exception) -> ApiError:
    """The HTTP meaning of an exception raised below the routes."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ParleyError):
        return ApiError(KIND_STATUS[exc.kind], exc.code, exc.message, param=exc.param)
    if isinstance(exc, SessionNotFound):
        return ApiError(404, "session_not_found", "no session with this id: create one with POST /v1/sessions")
    if isinstance(exc, SessionVersionUnsupported):
        return session_version_error(exc)
    if isinstance(exc, SessionBusy):
        retry = str(max(1, round(exc.retry_after_s)))
        return ApiError(409, "session_busy", "another turn of this session is in progress; retry shortly",
                        headers={"Retry-After": retry})
    if isinstance(exc, TurnConflict):
        return ApiError(409, "turn_conflict", "the session changed while this turn ran; nothing was saved, retry",
                        headers={"Retry-After": "1"})
    if isinstance(exc, StoreUnavailable):
        return ApiError(503, "store_unavailable", "the session store (Redis) is unreachable; retry shortly",
                        headers={"Retry-After": str(RETRY_AFTER_S)})
    if isinstance(exc, DecoderUnavailable):
        log.warning("turn failed: %s", exc)
        return ApiError(503, "decoder_unavailable", "the reply model's server is unreachable; nothing was saved, "
                        "retry shortly", headers={"Retry-After": str(RETRY_AFTER_S)})
    log.error("unhandled error", exc_info=exc)  # called from the error handlers, with the exception at hand
    return ApiError(500, "internal_error", "the server failed on this request; it has been logged")


def session_version_error(exc: SessionVersionUnsupported) -> ApiError:
    """410 for a session an older Parley stored that no migration reads any more; 409 for one a newer Parley
    stored (a deploy rolling out or back): each says how to go on."""
    if exc.found < exc.supported:
        return ApiError(410, "session_version_unsupported",
                        f"this session was stored by an older Parley (format v{exc.found}) that this server "
                        f"(v{exc.supported}) can no longer read; delete it and create a new one with POST /v1/sessions")
    return ApiError(409, "session_version_unsupported",
                    f"this session was stored by a newer Parley (format v{exc.found}) than this server "
                    f"(v{exc.supported}); retry once the deploy has finished, or send it to an up-to-date server")


def validation_message(errors: Sequence[Mapping[str, Any]]) -> str:
    """pydantic's first error as 'field.path: what is wrong' (the body is not part of the path)."""
    where = validation_param(errors)
    message = str((errors[0] if errors else {}).get("msg", "invalid request"))
    return f"{where}: {message}" if where else message


def validation_param(errors: Sequence[Mapping[str, Any]]) -> str | None:
    """The field path of pydantic's first error, e.g. "messages.0.content"; None for the body as a whole."""
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":  # its loc is a character offset, not a field
        return None
    return ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None


def install_error_handlers(app: FastAPI) -> None:
    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        err = as_api_error(exc)
        if isinstance(exc, StoreUnavailable):
            request.app.state.metrics.redis_error()
        return error_response(err.status, err.code, err.message, err.headers, path=request.url.path, param=err.param)

    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", validation_message(exc.errors()), path=request.url.path,
                              param=validation_param(exc.errors()))

    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        path = request.url.path
        if exc.status_code == 400 and exc.detail == BODY_PARSE_ERROR:
            # FastAPI's answer to a body that is not JSON; the turn route says 422 invalid_request for the same.
            return error_response(422, "invalid_request", "the body is not valid JSON (or not UTF-8)", path=path)
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail), exc.headers,
                              path=path)

    # Starlette types a handler's exception as Exception, whatever class it is registered for.
    app.add_exception_handler(RequestValidationError, on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, on_http)  # type: ignore[arg-type]
    # Known errors are answered here; a bare Exception reaches Starlette's
    # outermost handler, which answers with the same shape and logs it.
    app.add_exception_handler(ApiError, on_error)
    app.add_exception_handler(ParleyError, on_error)
    app.add_exception_handler(StoreError, on_error)
    app.add_exception_handler(DecoderUnavailable, on_error)
    app.add_exception_handler(Exception, on_error)
