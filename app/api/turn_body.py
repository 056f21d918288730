"""Reading a turn from the request: JSON (media as base64 or data: URLs) or a form (media as files)."""

import asyncio
import hashlib
import json
from contextlib import nullcontext
from urllib.parse import unquote_to_bytes

from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from app.api.deps import SettingsDep
from app.config import Settings
from app.api.errors import ApiError, validation_message
from app.media.image import decode_data_url_or_base64
from app.media.text import clean_text
from app.modalities import MODALITIES
from app.observability.tracing import span
from app.reply import ReplyOptions
from app.schemas import TurnRequest
from app.turn import TurnInput

FORM_FIELDS = {"text", "reply_audio", *MODALITIES}  # a form names each modality's file parts by its name
FORM_BOOLEANS = {"true": True, "false": False}
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
MAX_FORM_PARTS = 16  # a turn carries a handful of parts; more is abuse
JSON_FIELDS = {"images": "image", "audio": "audio"}  # TurnRequest's media fields -> the modality each carries

Media = dict[str, list[bytes]]  # modality name -> its items, encoded


async def read_turn(request: Request, settings: SettingsDep) -> TurnInput:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json" or content_type.endswith("+json"):
        text, media, reply_audio = await _json_body(request, settings)
    elif content_type in FORM_TYPES:
        text, media, reply_audio = await _form_body(request, content_type)
    else:
        raise ApiError(415, "unsupported_media_type",
                       f"content type {content_type or '(none)'} is not accepted; "
                       "send application/json or multipart/form-data")
    return await asyncio.to_thread(build_turn, text, media, settings, reply_audio=reply_audio)


def build_turn(text: str | None, media: Media, settings: Settings, *, reply_audio: bool = False) -> TurnInput:
    """Check and decode what a turn carries (blocking: run it off the event loop). Also the OpenAI route's path."""
    text = clean_text(text, max_chars=settings.max_text_chars)
    _check_image_count(len(media.get("image", [])), settings)
    if not (text or any(media.values())):  # an empty clip is refused as empty_audio, not an empty turn
        raise ApiError(422, "empty_turn", "the turn carries nothing: send non-empty `text`, `images` or `audio`")
    return _decode(text, media, settings, reply_audio=reply_audio)


def _check_image_count(count: int, settings: Settings) -> None:
    if count > settings.max_images:
        raise ApiError(413, "too_many_images", f"{count} images; a turn takes at most {settings.max_images}")


def _decode(text: str, media: Media, settings: Settings, *, reply_audio: bool) -> TurnInput:
    """Decode media off the event loop; any bad item refuses the whole turn before it starts."""
    sent = {name: media[name] for name in MODALITIES if media.get(name)}  # text alone has nothing to decode: no span
    with span("media.decode", **{f"parley.{MODALITIES[name].plural}": len(items) for name, items in sent.items()}) \
            if sent else nullcontext():
        decoded = {name: tuple(MODALITIES[name].decode(data, settings) for data in items) for name, items in sent.items()}
    return TurnInput(text=text, media=decoded, options=ReplyOptions(reply_audio=reply_audio),
                     fingerprint=_fingerprint(text, media, reply_audio=reply_audio))


def _fingerprint(text: str, media: Media, *, reply_audio: bool = False) -> str:
    """The same turn sent as JSON or as a form, with any boundary, hashes the same. Asking for a spoken
    reply is part of the request (a replay must answer with audio); leaving it out hashes as before.

    Hashes of stored Idempotency-Keys must not change: modalities of many items hash first (photos) and a
    single-item one hashes its name and its item or nothing (a clip), the order and marks hashes always had."""
    digest = hashlib.sha256()
    parts = [text.encode()]
    for modality in sorted(MODALITIES.values(), key=lambda modality: modality.single):
        items = media.get(modality.name, [])
        parts += [modality.name.encode(), *(items or [b""])] if modality.single else items
    for part in (*parts, *([b"reply_audio"] if reply_audio else [])):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


TurnBody = tuple[str | None, Media, bool]  # text, media, reply_audio


async def _json_body(request: Request, settings: Settings) -> TurnBody:
    raw = await request.body()
    try:
        body = TurnRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", validation_message(exc.errors())) from exc
    _refuse_duplicate_keys(raw)
    _check_image_count(len(body.images), settings)  # before decoding any base64
    media: Media = {}
    for field, name in JSON_FIELDS.items():
        sent = getattr(body, field)
        items = sent if isinstance(sent, list) else [sent] if sent is not None else []
        media[name] = [decode_data_url_or_base64(item.data, max_bytes=MODALITIES[name].max_bytes(settings), kind=name)
                       for item in items]
    return body.text, media, body.reply_audio


def _refuse_duplicate_keys(raw: bytes) -> None:
    """{"text": "a", "text": "b"} means different things to different parsers: refuse it.

    Runs after the model validated, so the document is small and shallow (no recursion risk)."""

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        keys = [key for key, _ in items]
        if len(set(keys)) != len(keys):
            repeated = sorted({key for key in keys if keys.count(key) > 1})
            raise ApiError(422, "invalid_request", f"duplicate keys in the JSON body: {', '.join(repeated)}")
        return dict(items)

    json.loads(raw, object_pairs_hook=pairs)


async def _form_body(request: Request, content_type: str) -> TurnBody:
    if content_type == "application/x-www-form-urlencoded":
        # Starlette decodes a urlencoded form leniently (bad UTF-8 -> U+FFFD); the raw body is checked strictly.
        try:
            unquote_to_bytes((await request.body()).replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ApiError(422, "invalid_request", "the form is not valid UTF-8") from exc
    try:
        form = await request.form(max_files=MAX_FORM_PARTS, max_fields=MAX_FORM_PARTS)
    except Exception as exc:  # python-multipart raises several types for malformed or oversized forms
        raise ApiError(422, "invalid_multipart", f"the form could not be parsed: {exc}") from exc
    unknown = set(form.keys()) - FORM_FIELDS
    if unknown:
        raise ApiError(422, "invalid_request", f"unknown form fields: {', '.join(sorted(unknown))}; "
                                               "use text, image (repeatable), audio and reply_audio")
    texts = [t for t in form.getlist("text") if isinstance(t, str)]
    if len(form.getlist("text")) > len(texts) or len(texts) > 1:
        raise ApiError(422, "invalid_request", "`text` must be one plain form field, not a file")
    audios = form.getlist("audio")
    if len(audios) > 1:
        raise ApiError(422, "invalid_request", "a turn takes one `audio` clip")
    flags = [f.strip().lower() for f in form.getlist("reply_audio") if isinstance(f, str)]
    if len(form.getlist("reply_audio")) > len(flags) or len(flags) > 1 or any(f not in FORM_BOOLEANS for f in flags):
        raise ApiError(422, "invalid_request", "`reply_audio` must be one form field, true or false")
    media = {name: [await _file_bytes(part, name) for part in form.getlist(name)] for name in MODALITIES}
    reply_audio = bool(flags) and FORM_BOOLEANS[flags[0]]
    return (texts[0] if texts else None), media, reply_audio


async def _file_bytes(part: UploadFile | str, field: str) -> bytes:
    if not isinstance(part, UploadFile):
        raise ApiError(422, "invalid_request", f"`{field}` must be a file part (multipart/form-data)")
    return await part.read()
