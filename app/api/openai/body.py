"""Reading an OpenAI chat request into turns: each user message becomes a UserTurn through the same checks and
decoders as a native turn (app/api/turn_body.py, app/media/), assistant messages become history.

Content parts: `text`, `image_url` (data: URLs; http(s) only from hosts in PARLEY_OPENAI_IMAGE_HOSTS, fetched with
a size and time limit) and `input_audio` (base64 wav/mp3). System and developer messages are not used: the
policy and its own system prompt decide what is said.

A request ending in `tool` messages answers the tool_calls of the assistant message before them: those outputs
are the turn's (stateless: together with the user message that led to the call; with a session, that message
is already a committed turn, so the outputs are a turn of their own). Earlier tool messages were stated in
the replies after them and are not read again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from urllib.parse import urlsplit

import httpx

from app.api.turn_body import build_turn
from app.config import Settings
from app.api.errors import ApiError
from app.errors import ParleyError
from app.media.image import decode_data_url_or_base64
from app.media.text import clean_text
from app.dialogue.tools import ToolResult
from app.api.openai.serving import DecodedChat, PastMessage
from app.pipeline import UserTurn
from app.api.openai.protocol import AudioPart, ChatCompletionRequest, ChatMessage, ImagePart, TextPart

READ_CHUNK = 64 * 1024  # bytes per read of a fetched image


async def read_conversation(body: ChatCompletionRequest, settings: Settings, *, with_past: bool) -> DecodedChat:
    """The request's messages, decoded; any bad message refuses the request (400/413/415/422, param names it).

    Without `with_past` (a session holds the conversation) only the last message is read."""
    if len(body.messages) > settings.history_max:  # each earlier user message costs a tracking pass
        raise ApiError(413, "too_many_messages", f"{len(body.messages)} messages; a conversation sent here may have "
                       f"at most {settings.history_max} (the history a session keeps)", param="messages")
    results, answered = _tool_results(body.messages, settings)
    spoken = "audio" in (body.modalities or [])
    if results and not with_past:  # the session holds the user message that led to the call
        return DecodedChat((), _tool_turn(results, reply_audio=spoken))
    if answered is None:
        raise ApiError(400, "invalid_request", "the last message must be the user's (it is the one answered) or "
                       "tool messages answering the assistant's tool_calls", param=f"messages.{len(body.messages) - 1}.role")
    _check_media_budget(body.messages[:answered + 1] if with_past else body.messages[answered:answered + 1], settings)
    past: list[PastMessage] = []
    for index, message in enumerate(body.messages[:answered] if with_past else []):
        if message.role == "assistant":
            past.append(PastMessage("assistant", _plain_text(message, index, settings)))
        elif message.role == "user":
            turn = await _user_turn(message, index, settings)
            past.append(PastMessage("user", turn.text, turn))
    last = await _user_turn(body.messages[answered], answered, settings, reply_audio=spoken)
    return DecodedChat(tuple(past), dataclasses.replace(last, tool_results=results))


def _tool_results(messages: list[ChatMessage], settings: Settings) -> tuple[tuple[ToolResult, ...], int | None]:
    """(the trailing tool messages' outputs, the index of the user message answered): ((), last index) for a
    request ending in a user message; None as the index when no user message is being answered."""
    end = len(messages)
    while end and messages[end - 1].role == "tool":
        end -= 1
    if end == len(messages):
        return (), end - 1 if messages[-1].role == "user" else None
    caller = end - 1
    tool_calls = messages[caller].tool_calls if caller >= 0 and messages[caller].role == "assistant" else None
    if not tool_calls:
        raise ApiError(400, "invalid_request", "tool messages must follow the assistant message whose tool_calls "
                       "they answer", param=f"messages.{end}.role")
    calls = {call.id for call in tool_calls}
    results = []
    for index in range(end, len(messages)):
        message = messages[index]
        call_id = message.tool_call_id
        if call_id is None or call_id not in calls:
            raise ApiError(400, "invalid_request", f"tool_call_id {call_id!r} answers none of the "
                           f"tool_calls of message {caller}", param=f"messages.{index}.tool_call_id")
        results.append(ToolResult(call_id, _plain_text(message, index, settings)))
    users = [index for index in range(caller) if messages[index].role == "user"]
    return tuple(results), users[-1] if users else None


def _tool_turn(results: tuple[ToolResult, ...], *, reply_audio: bool) -> UserTurn:
    """Tool outputs as a session turn with nothing typed; its fingerprint (for Idempotency-Key) is the outputs'."""
    digest = hashlib.sha256(repr([(r.call_id, r.content) for r in results]).encode()).hexdigest()
    return UserTurn("", fingerprint=f"tool:{digest}", reply_audio=reply_audio, tool_results=results)


async def _user_turn(message: ChatMessage, index: int, settings: Settings, *, reply_audio: bool = False) -> UserTurn:
    param = f"messages.{index}.content"
    try:
        texts, images, audios = await _parts(message, settings)
        if not (any(t.strip() for t in texts) or images or audios):
            raise ApiError(400, "empty_turn", f"message {index} carries nothing: send text, image_url or input_audio")
        audio = audios[0] if audios else None
        return await asyncio.to_thread(build_turn, "\n".join(texts), images, audio, settings, reply_audio=reply_audio)
    except (ApiError, ParleyError) as exc:
        exc.param = exc.param or param
        raise


async def _parts(message: ChatMessage, settings: Settings) -> tuple[list[str], list[bytes], list[bytes]]:
    """(texts, image bytes, audio bytes) of a message, media not yet decoded."""
    if message.content is None or isinstance(message.content, str):
        return [message.content or ""], [], []
    images = [part for part in message.content if isinstance(part, ImagePart)]
    texts = [part.text for part in message.content if isinstance(part, TextPart)]
    image_bytes = [await _image_bytes(part.image_url.url, settings) for part in images]
    audio_bytes = [decode_data_url_or_base64(part.input_audio.data, max_bytes=settings.max_audio_bytes, kind="audio")
                   for part in message.content if isinstance(part, AudioPart)]
    return texts, image_bytes, audio_bytes


def _check_media_budget(messages: list[ChatMessage], settings: Settings) -> None:
    """A request is one turn: all its messages together carry at most a turn's media (checked before decoding)."""
    parts = [part for m in messages if not (m.content is None or isinstance(m.content, str)) for part in m.content]
    images = sum(isinstance(part, ImagePart) for part in parts)
    clips = sum(isinstance(part, AudioPart) for part in parts)
    if images > settings.max_images or clips > 1:
        raise ApiError(413, "too_much_media", f"the messages carry {images} images and {clips} audio clips; a request "
                       f"takes at most {settings.max_images} images and one clip in all. For a longer conversation "
                       "with media, send one message per request with X-Session-Id", param="messages")


def _plain_text(message: ChatMessage, index: int, settings: Settings) -> str:
    param = f"messages.{index}.content"
    if message.content is None or isinstance(message.content, str):
        text = message.content or ""
    else:
        parts = [part for part in message.content if isinstance(part, TextPart)]
        if len(parts) < len(message.content):
            raise ApiError(400, "invalid_request", f"{message.role} messages carry text only", param=param)
        text = "\n".join(part.text for part in parts)
    try:
        return clean_text(text, max_chars=settings.max_text_chars)
    except ParleyError as exc:
        exc.param = param
        raise


async def _image_bytes(url: str, settings: Settings) -> bytes:
    scheme = urlsplit(url.strip()).scheme.lower()
    if scheme in ("http", "https"):
        return await fetch_image(url.strip(), settings)
    if scheme != "data":
        raise ApiError(400, "invalid_image_url", "image_url.url must be a data: URL (data:image/png;base64,...)")
    return decode_data_url_or_base64(url, max_bytes=settings.max_image_bytes)


async def fetch_image(url: str, settings: Settings) -> bytes:
    """GET an image from an allow-listed host: no redirects, at most max_image_bytes, within the time limit."""
    parts = urlsplit(url)
    allowed = settings.openai_image_host_set
    if not allowed or not {parts.hostname or "", parts.netloc.lower()} & allowed:
        raise ApiError(400, "remote_url_refused",
                       "image URLs are not fetched from this host; send the image inline as a data: URL"
                       + ("" if allowed else " (the server allows no image hosts: PARLEY_OPENAI_IMAGE_HOSTS)"))
    limit = settings.max_image_bytes
    try:
        async with asyncio.timeout(settings.openai_image_timeout_s), httpx.AsyncClient() as http:
            async with http.stream("GET", url, follow_redirects=False) as response:
                if response.status_code != 200:
                    raise ApiError(400, "image_fetch_failed", f"fetching the image answered {response.status_code}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise ApiError(413, "image_too_large", f"the image is {declared} bytes; the limit is {limit}")
                data = bytearray()
                async for chunk in response.aiter_bytes(READ_CHUNK):
                    data += chunk
                    if len(data) > limit:
                        raise ApiError(413, "image_too_large", f"the image is over the {limit}-byte limit")
                return bytes(data)
    except TimeoutError as exc:
        raise ApiError(400, "image_fetch_failed",
                       f"fetching the image took over {settings.openai_image_timeout_s:g} s") from exc
    except httpx.HTTPError as exc:
        raise ApiError(400, "image_fetch_failed", f"the image could not be fetched: {type(exc).__name__}") from exc
