"""Server-sent events out of a turn's event stream (app/turn.py), for both protocols.

Native turns: `token` events as the reply is written, then `done`. The model's words stream as they come;
when the finished reply fails the grounding check (a dropped or invented fact), a `replace` event carrying
the policy's wording comes before `done`, and clients show that instead. `done.reply` is always the reply
that was stored. The OpenAI encoder (app/api/openai/serving.py) reads the same events.
"""

import json
from collections.abc import AsyncIterator, Callable

from fastapi.responses import StreamingResponse

from app.api.errors import ApiError, as_api_error
from app.schemas import TurnResponse
from app.turn import Done, Replace, Token, TurnEvent


def event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def native_events(events: AsyncIterator[TurnEvent]) -> AsyncIterator[str]:
    async for item in events:
        if isinstance(item, Token):
            yield event("token", {"text": item.text})
        elif isinstance(item, Replace):
            yield event("replace", {"text": item.text})
        elif isinstance(item, Done):
            yield event("done", TurnResponse.of(item.result).model_dump())


def native_error(err: ApiError) -> str:
    return event("error", {"error": {"code": err.code, "message": err.message}})


async def stream_sse(lines: AsyncIterator[str], on_error: Callable[[ApiError], str]) -> StreamingResponse:
    """Start the response at its first line, so that errors before it (404, 409, 503) still answer as plain
    JSON; an error after it becomes the stream's last line (`on_error`)."""
    first = await anext(lines)

    async def rest() -> AsyncIterator[str]:
        yield first
        try:
            async for line in lines:
                yield line
        except Exception as exc:  # the stream has started: the error becomes its last event
            yield on_error(as_api_error(exc))

    return StreamingResponse(rest(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
