"""Server-sent events for a turn: `token` events as the reply is written, then `done`.

The model's words stream as they come; when the finished reply fails the grounding check
(a dropped or invented fact), a `replace` event carrying the policy's wording comes before
`done`, and clients show that instead. `done.reply` is always the reply that was stored.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from fastapi.responses import StreamingResponse

from app.api.errors import as_api_error
from app.schemas import TurnResponse

TurnRunner = Callable[[Callable[[str], None]], Coroutine[Any, Any, TurnResponse]]


def event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def stream_turn(run: TurnRunner) -> StreamingResponse:
    """Start the turn; errors before the first token (404, 409, 503) still answer as plain JSON.

    The turn runs as its own task, so a client that disconnects mid-stream does not
    cancel it: the reply is committed and can be read from the session's history.
    """
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    task = asyncio.create_task(run(queue.put_nowait))
    task.add_done_callback(lambda _: queue.put_nowait(None))
    first = await queue.get()
    if first is None:
        task.result()  # raises the turn's error, answered by the error handlers

    async def events() -> AsyncIterator[str]:
        piece = first
        while piece is not None:
            yield event("token", {"text": piece})
            piece = await queue.get()
        try:
            result = task.result()
            if not result.grounded and not result.replayed:
                yield event("replace", {"text": result.reply})
            yield event("done", result.model_dump())
        except Exception as exc:  # the stream has started: the error becomes its last event
            err = as_api_error(exc)
            yield event("error", {"error": {"code": err.code, "message": err.message}})

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
