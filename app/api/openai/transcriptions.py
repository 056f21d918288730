"""POST /v1/audio/transcriptions: OpenAI-compatible speech to text with the server's speech encoder (Whisper base
by default), whose batches it shares with voice turns. The same audio limits and errors as a voice turn; errors
in OpenAI's shape (app/api/errors.py picks it by path)."""

import asyncio
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import PlainTextResponse

from app.api.deps import PipelineDep, SettingsDep
from app.api.errors_doc import openai_errors
from app.config import Settings
from app.api.errors import ApiError
from app.errors import ParleyError
from app.media.audio import FORMATS, decode_audio
from app.observability.tracing import span
from app.api.openai.protocol import Transcription, TranscriptionVerbose

router = APIRouter(prefix="/v1/audio", tags=["openai"])

ENGLISH = ("en", "english")  # the speech encoder transcribes English (models/speech.py)
EXAMPLE = "My order number is 4512."
REQUEST_EXAMPLES = {"multipart/form-data": {"examples": {"json": {
    "summary": "a voice clip, answered as JSON", "value": {"file": "(question.wav)", "model": "whisper-1"}}}}}


@router.post(
    "/transcriptions",
    response_model=Transcription | TranscriptionVerbose,
    summary="Transcribe speech (OpenAI-compatible)",
    responses={
        200: {"content": {"application/json": {"example": {"text": EXAMPLE}}, "text/plain": {"example": EXAMPLE}},
              "description": "json: `{text}`; verbose_json: also `task`, `language`, `duration`; text: the words"},
        **openai_errors(400, 401, 413, 422, 429, 503, meanings={
            400: "no `file`, a malformed form, or a language other than English",
            413: "the audio is over PARLEY_MAX_AUDIO_BYTES or PARLEY_MAX_AUDIO_SECONDS",
            422: "the file is empty or not audio this server decodes"}),
    },
    openapi_extra={"requestBody": {"content": REQUEST_EXAMPLES}},
)
async def create_transcription(
    pipeline: PipelineDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description=f"the audio: {FORMATS}")],
    # Accepted so that OpenAI clients work unchanged; the server's one speech model answers, decoding greedily.
    model: Annotated[str | None, Form(description="any name (e.g. whisper-1): the server's speech model answers")] = None,
    language: Annotated[str | None, Form(description="`en` or unset: the speech model transcribes English")] = None,
    prompt: Annotated[str | None, Form(description="accepted, not used")] = None,
    response_format: Annotated[Literal["json", "text", "verbose_json"], Form()] = "json",
    temperature: Annotated[float, Form(ge=0, le=1, description="accepted, not used: decoding is greedy")] = 0.0,
) -> Transcription | TranscriptionVerbose | PlainTextResponse:
    """Speech to text, as OpenAI's endpoint: a multipart form with the audio in `file`. The clip goes through the
    same decoding and limits as a voice turn, then through the speech encoder batched with other requests."""
    if language is not None and language.strip().lower() not in ENGLISH:
        raise ApiError(400, "unsupported_language", f"language {language!r} is not transcribed here: the speech "
                       "model transcribes English (send language=en, or leave it out)", param="language")
    clip = await asyncio.to_thread(_decoded, await file.read(), settings)
    with span("encode.speech"):
        heard = await pipeline.encoders.speech.submit(clip)
    text = heard.text.strip()
    if response_format == "text":
        return PlainTextResponse(text)
    if response_format == "verbose_json":
        return TranscriptionVerbose(language="english", duration=round(heard.duration_s, 2), text=text)
    return Transcription(text=text)


def _decoded(data: bytes, settings: Settings) -> np.ndarray:
    """The file as (N,) float32 samples at the speech encoder's rate; 413/422 as for a voice turn (blocking)."""
    with span("media.decode", **{"parley.audio": True}):
        try:
            return decode_audio(data, max_seconds=settings.max_audio_seconds, max_bytes=settings.max_audio_bytes)
        except ParleyError as exc:
            exc.param = "file"
            raise
