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
from app.media.audio import decode_audio
from app.media.image import decode_data_url_or_base64, decode_image
from app.media.text import clean_text
from app.observability.tracing import span
from app.pipeline import UserTurn
from app.schemas import TurnRequest

FORM_FIELDS = {"text", "image", "audio", "reply_audio"}
FORM_BOOLEANS = {"true": True, "false": False}
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
MAX_FORM_PARTS = 16  # a turn carries a handful of parts; more is abuse
SAMPLE_RATE = 16_000  # what the speech encoders take


async def read_turn(request: Request, settings: SettingsDep) -> UserTurn:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json" or content_type.endswith("+json"):
        text, images, audio, reply_audio = await _json_body(request, settings)
    elif content_type in FORM_TYPES:
        text, images, audio, reply_audio = await _form_body(request, content_type)
    else:
        raise ApiError(415, "unsupported_media_type",
                       f"content type {content_type or '(none)'} is not accepted; "
                       "send application/json or multipart/form-data")
    return await asyncio.to_thread(build_turn, text, images, audio, settings, reply_audio=reply_audio)


def build_turn(
    text: str | None, images: list[bytes], audio: bytes | None, settings: Settings, *, reply_audio: bool = False
) -> UserTurn:
    """Check and decode what a turn carries (blocking: run it off the event loop). Also the OpenAI route's path."""
    text = clean_text(text, max_chars=settings.max_text_chars)
    _check_image_count(len(images), settings)
    if not (text or images or audio is not None):  # an empty clip is refused as empty_audio, not an empty turn
        raise ApiError(422, "empty_turn", "the turn carries nothing: send non-empty `text`, `images` or `audio`")
    return _decode(text, images, audio, settings, reply_audio=reply_audio)


def _check_image_count(count: int, settings: Settings) -> None:
    if count > settings.max_images:
        raise ApiError(413, "too_many_images", f"{count} images; a turn takes at most {settings.max_images}")


def _decode(
    text: str, images: list[bytes], audio: bytes | None, settings: Settings, *, reply_audio: bool
) -> UserTurn:
    """Decode media off the event loop; any bad item refuses the whole turn before it starts."""
    media = images or audio is not None  # text alone has nothing to decode: no span
    with span("media.decode", **{"parley.images": len(images), "parley.audio": audio is not None}) if media \
            else nullcontext():
        decoded = tuple(decode_image(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
                        for data in images)
        clip = None
        if audio is not None:
            clip = decode_audio(audio, max_seconds=settings.max_audio_seconds, max_bytes=settings.max_audio_bytes,
                                sample_rate=SAMPLE_RATE)
    return UserTurn(text=text, images=decoded, audio=clip, reply_audio=reply_audio,
                    fingerprint=_fingerprint(text, images, audio, reply_audio=reply_audio))


def _fingerprint(text: str, images: list[bytes], audio: bytes | None, *, reply_audio: bool = False) -> str:
    """The same turn sent as JSON or as a form, with any boundary, hashes the same. Asking for a spoken
    reply is part of the request (a replay must answer with audio); leaving it out hashes as before."""
    digest = hashlib.sha256()
    for part in (text.encode(), *images, b"audio", audio or b"", *([b"reply_audio"] if reply_audio else [])):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


TurnBody = tuple[str | None, list[bytes], bytes | None, bool]  # text, images, audio, reply_audio


async def _json_body(request: Request, settings: Settings) -> TurnBody:
    raw = await request.body()
    try:
        body = TurnRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", validation_message(exc.errors())) from exc
    _refuse_duplicate_keys(raw)
    _check_image_count(len(body.images), settings)  # before decoding any base64
    images = [decode_data_url_or_base64(item.data, max_bytes=settings.max_image_bytes) for item in body.images]
    audio = None
    if body.audio is not None:
        audio = decode_data_url_or_base64(body.audio.data, max_bytes=settings.max_audio_bytes, kind="audio")
    return body.text, images, audio, body.reply_audio


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
    images = [await _file_bytes(part, "image") for part in form.getlist("image")]
    audio = await _file_bytes(audios[0], "audio") if audios else None
    reply_audio = bool(flags) and FORM_BOOLEANS[flags[0]]
    return (texts[0] if texts else None), images, audio, reply_audio


async def _file_bytes(part: UploadFile | str, field: str) -> bytes:
    if not isinstance(part, UploadFile):
        raise ApiError(422, "invalid_request", f"`{field}` must be a file part (multipart/form-data)")
    return await part.read()
