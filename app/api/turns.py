"""POST /v1/sessions/{id}/turns: one user turn in, the reply and the tracked state out."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from app.api.deps import MetricsDep, PipelineDep, TenantDep
from app.api.errors_doc import errors
from app.api.sse import native_error, native_events, stream_sse
from app.api.turn_body import read_turn
from app.pipeline import RetryKey
from app.schemas import TurnRequest, TurnResponse
from app.turn import TurnInput, TurnResult

router = APIRouter(prefix="/v1/sessions", tags=["turns"])

REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": TurnRequest.model_json_schema(),
            "examples": {
                "text": {"summary": "a typed turn", "value": {"text": "My lamp arrived broken, order A7Q-4412"}},
            },
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "text": {"type": "string", "description": "what the user typed"},
                    "image": {"type": "array", "items": {"type": "string", "format": "binary"},
                              "description": "photos (repeat the field for several)"},
                    "audio": {"type": "string", "format": "binary", "description": "one voice clip"},
                    "reply_audio": {"type": "string", "enum": ["true", "false"],
                                    "description": "also speak the reply (a WAV in `reply_audio`)"},
                },
            },
            "examples": {"text": {"summary": "a typed turn as a form", "value": {"text": "what was my order number?"}}},
        },
    },
}


@router.post(
    "/{session_id}/turns",
    response_model=TurnResponse,
    responses={
        200: {"content": {"text/event-stream": {"example": 'event: token\ndata: {"text": "Your"}\n\n'
                                                          'event: done\ndata: {"turn": 1, "reply": "..."}\n\n'}},
              "description": "the reply; with ?stream=true or Accept: text/event-stream, server-sent events"},
        **errors(404, 409, 410, 413, 415, 422, 503),
    },
    openapi_extra={"requestBody": REQUEST_BODY},
)
async def post_turn(
    session_id: str,
    request: Request,
    # Resolved in this order: who asks and whether we can serve, before any media is decoded.
    tenant: TenantDep,
    pipeline: PipelineDep,
    turn: Annotated[TurnInput, Depends(read_turn)],
    metrics: MetricsDep,
    stream: Annotated[bool, Query(description="stream the reply as server-sent events")] = False,
    idempotency_key: Annotated[str | None, Header(
        alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
        description="makes retries safe: a repeat with the same key returns the stored reply, never a second turn",
    )] = None,
) -> TurnResponse | StreamingResponse:
    """One user turn: text, photos and a voice clip in any mix, as JSON (base64 or data: URLs) or as a form with
    files (try it from /docs: pick a photo for `image`). The reply comes with the tracked state."""
    retry_key = RetryKey(idempotency_key, turn.fingerprint) if idempotency_key is not None else None
    events = pipeline.run_turn(tenant, session_id, turn, retry_key=retry_key)

    def observe(result: TurnResult) -> None:
        if not result.replayed:
            metrics.observe_turn(turn.modalities, result.timings_ms["total"] / 1000)

    events.when_done(observe)
    if stream or "text/event-stream" in request.headers.get("accept", ""):
        return await stream_sse(native_events(aiter(events)), native_error)
    return TurnResponse.of(await events.result())
