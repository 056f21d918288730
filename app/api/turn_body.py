"""Reading a turn from the request: JSON or multipart/form-data, nothing else."""

from fastapi import Request
from pydantic import ValidationError

from app.api.deps import SettingsDep
from app.errors import ApiError
from app.media import clean_text
from app.pipeline import UserTurn
from app.schemas import TurnRequest

MULTIPART_FIELDS = {"text"}
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
MAX_FORM_PARTS = 16  # a turn carries a handful of parts; more is abuse


async def read_turn(request: Request, settings: SettingsDep) -> UserTurn:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json" or content_type.endswith("+json"):
        body = await _json_body(request)
    elif content_type in FORM_TYPES:
        body = await _form_body(request)
    else:
        raise ApiError(415, "unsupported_media_type",
                       f"content type {content_type or '(none)'} is not accepted; send application/json or multipart/form-data")
    text = clean_text(body.text, max_chars=settings.max_text_chars)
    if not text:
        raise ApiError(422, "empty_turn", "the turn carries nothing: send non-empty `text`")
    return UserTurn(text=text)


async def _json_body(request: Request) -> TurnRequest:
    raw = await request.body()
    try:
        return TurnRequest.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(422, "invalid_request", f"{where}: {first['msg']}" if where else first["msg"]) from exc


async def _form_body(request: Request) -> TurnRequest:
    try:
        form = await request.form(max_files=MAX_FORM_PARTS, max_fields=MAX_FORM_PARTS)
    except Exception as exc:  # python-multipart raises several types for malformed bodies
        raise ApiError(422, "invalid_multipart", f"the multipart body could not be parsed: {exc}") from exc
    unknown = set(form.keys()) - MULTIPART_FIELDS
    if unknown:
        raise ApiError(422, "invalid_request", f"unknown form fields: {', '.join(sorted(unknown))}")
    text = form.get("text")
    if text is not None and not isinstance(text, str):
        raise ApiError(422, "invalid_request", "`text` must be a plain form field, not a file")
    return TurnRequest(text=text)
