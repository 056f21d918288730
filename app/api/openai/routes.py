"""OpenAI-compatible chat: POST /v1/chat/completions and GET /v1/models. Errors here are in OpenAI's shape
(app/api/errors.py picks it by path); the serving logic is in app/api/openai/serving.py."""

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse

from app.api.deps import MetricsDep, PipelineDep, SettingsDep, TenantDep
from app.api.errors_doc import openai_errors
from app.api.openai.body import read_conversation
from app.api.openai.serving import (ChatTarget, check_model, reply_options, run_chat, served_models, to_chunks,
                                to_completion, tool_offer)
from app.pipeline import RetryKey
from app.api.openai.protocol import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ModelList

router = APIRouter(prefix="/v1", tags=["openai"])

STREAM_EXAMPLE = (
    'data: {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": '
    '{"role": "assistant", "content": ""}}], ...}\n\n'
    'data: {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": '
    '{"content": "Your"}}], ...}\n\n'
    'data: {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, '
    '"finish_reason": "stop"}], "parley": {"state": {...}, ...}}\n\n'
    "data: [DONE]\n\n"
)


@router.get("/models", response_model=ModelList, summary="List the models served (OpenAI-compatible)",
            responses=openai_errors(401, 429))
async def list_models(settings: SettingsDep) -> ModelList:
    """One model, `parley`: the dialogue pipeline with the configured decoder (named in `parley.decoder`)."""
    return served_models(settings)


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    summary="Answer the last user message (OpenAI-compatible)",
    responses={
        200: {"content": {"text/event-stream": {"example": STREAM_EXAMPLE}},
              "description": "a chat.completion; with `stream: true`, chat.completion.chunk events and `[DONE]`"},
        **openai_errors(400, 401, 404, 409, 413, 415, 422, 429, 503, meanings={
            404: "unknown model, or unknown X-Session-Id session",
            422: "a media part could not be decoded"}),
    },
)
async def chat_completions(
    body: ChatCompletionRequest,
    # Resolved in this order: who asks and whether we can serve, before any media is decoded.
    tenant: TenantDep,
    pipeline: PipelineDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    session_id: Annotated[str | None, Header(
        alias="X-Session-Id", min_length=1, max_length=128,
        description="run the last user message as one turn of this native session (state and history shared "
                    "with /v1/sessions); without it the request is stateless",
    )] = None,
    idempotency_key: Annotated[str | None, Header(
        alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
        description="with X-Session-Id: a repeat with the same key returns the stored reply, never a second turn",
    )] = None,
) -> ChatCompletion | StreamingResponse:
    """Messages with `text`, `image_url` (data: URLs) and `input_audio` (base64 wav/mp3) content parts.
    The reply comes with the tracked dialogue state in `parley`; with `tools`, a turn whose state fills a
    tool's arguments answers with that tool call (finish_reason "tool_calls")."""
    check_model(body.model, settings)
    options, tools = reply_options(body, stateful=session_id is not None), tool_offer(body)
    conversation = await read_conversation(body, settings, with_past=session_id is None)
    retry_key = RetryKey(idempotency_key, conversation.last.fingerprint) if idempotency_key else None
    target = ChatTarget(tenant, session_id, retry_key)
    result = await run_chat(pipeline, conversation, target, options=options, tools=tools)
    if not result.replayed:
        metrics.observe_turn(conversation.last.modalities, result.timings_ms["total"] / 1000)
    if not body.stream:
        return to_completion(result, model=body.model, target=target)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return _sse(to_chunks(result, model=body.model, target=target, include_usage=include_usage))


def _sse(chunks: list[ChatCompletionChunk]) -> StreamingResponse:
    async def lines() -> AsyncIterator[str]:
        for chunk in chunks:
            yield f"data: {_wire(chunk)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _wire(chunk: ChatCompletionChunk) -> str:
    """A chunk as OpenAI sends it: deltas carry only what they change; usage and parley only where they are."""
    data = chunk.model_dump(exclude={name for name in ("usage", "parley") if getattr(chunk, name) is None})
    for choice in data["choices"]:
        choice["delta"] = {key: value for key, value in choice["delta"].items() if value is not None}
    return json.dumps(data, ensure_ascii=False)
