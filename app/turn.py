"""The internal contract of one turn: a TurnInput goes in, events come out (Token, Replace, then Done with
the TurnResult), whatever protocol the turn arrived by.

The wire formats are adapters around these types (app/schemas.py: native; app/api/openai/serving.py: OpenAI), and
so is the idempotency record a session stores (`to_record`, `from_record` here), so a change to a wire
format is not a change to the pipeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.dialogue.state import DialogueState
from app.dialogue.tools import ToolCall, ToolOffer, ToolResult
from app.reply import DEFAULT_REPLY, ReplyOptions, WrittenReply


@dataclass(frozen=True)
class TurnInput:
    """A validated, decoded turn as the pipeline takes it."""

    text: str = ""  # what the user typed
    media: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)  # modality name -> decoded items, in order
    options: ReplyOptions = DEFAULT_REPLY  # how many replies, how long, how sampled, spoken or not
    tools: ToolOffer | None = None  # the client's tools: a turn that fills one's arguments ends in its call
    tool_results: tuple[ToolResult, ...] = ()  # a client's answers to the tool call the previous reply made
    fingerprint: str = ""  # hash of what was sent (text, media bytes, spoken reply), whatever the encoding

    @property
    def modalities(self) -> list[str]:
        """What the turn carries, for its history entry and metrics: "text", each modality sent, "tool"."""
        return (["text"] if self.text else []) + [name for name, items in self.media.items() if items] + (
            ["tool"] if self.tool_results else [])


@dataclass
class TurnResult:
    """One turn as the pipeline returns it."""

    turn: int
    state: DialogueState
    action: str  # the policy's decision (app/dialogue/policy.py), or "tool_call"
    choices: list[WrittenReply]  # options.n replies; the first is the turn's; none when a tool call stands instead
    readings: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # modality -> each item's summary
    tool_call: ToolCall | None = None
    reply_audio: bytes | None = None  # the first reply spoken (WAV), when the turn asked for it
    replayed: bool = False  # answered from the idempotency record: no turn was run
    prompt_tokens: int = 0
    completion_tokens: int = 0  # every choice's
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def reply(self) -> str:
        return self.choices[0].text if self.choices else ""

    @property
    def grounded(self) -> bool:
        """False when the model's wording failed the fact check and the policy's was used."""
        return self.choices[0].grounded if self.choices else True

    @property
    def transcript(self) -> str | None:
        heard = self.readings.get("audio", [])
        return (heard[0]["text"] or None) if heard else None

    @property
    def images(self) -> list[dict[str, Any]]:
        return self.readings.get("image", [])


@dataclass(frozen=True)
class Token:
    """A piece of the reply as the decoder wrote it (only when one reply is written)."""

    text: str


@dataclass(frozen=True)
class Replace:
    """The streamed reply failed the fact check: `text`, the policy's wording, replaces it."""

    text: str


@dataclass(frozen=True)
class Done:
    result: TurnResult


TurnEvent = Token | Replace | Done
EventSink = Callable[[Token | Replace], None]


class TurnStream:
    """A turn running in a task of its own, read as its events; the last is Done, or the turn's error raises.

    The task is not the reader's: a client that goes away mid-stream does not cancel the turn, which commits
    and whose reply can be read from the session's history.
    """

    def __init__(self, run: Callable[[EventSink], Awaitable[TurnResult]]) -> None:
        self._events: asyncio.Queue[Token | Replace | None] = asyncio.Queue()
        self._task = asyncio.ensure_future(run(self._events.put_nowait))
        self._task.add_done_callback(lambda _: self._events.put_nowait(None))

    def __aiter__(self) -> AsyncIterator[TurnEvent]:
        return self._read()

    async def _read(self) -> AsyncIterator[TurnEvent]:
        while (event := await self._events.get()) is not None:
            yield event
        yield Done(self._task.result())

    async def result(self) -> TurnResult:
        """The result, events unread."""
        return await self._task

    def when_done(self, callback: Callable[[TurnResult], None]) -> None:
        """Call `callback` with the result when the turn succeeds, whether or not anyone reads the stream."""
        def finished(task: asyncio.Future[TurnResult]) -> None:
            if not task.cancelled() and task.exception() is None:
                callback(task.result())

        self._task.add_done_callback(finished)


def to_record(result: TurnResult) -> dict[str, Any]:
    """The result as an idempotency record stores it, without the spoken reply (a replay speaks the stored
    words again). The format is the one records have always had (the native response of the time, plus the
    choices and the tool call), so records written before this contract replay the same."""
    return {
        "turn": result.turn, "reply": result.reply, "action": result.action, "grounded": result.grounded,
        "transcript": result.transcript, "images": result.images, "state": result.state.model_dump(),
        "replayed": result.replayed, "timings_ms": result.timings_ms,
        "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens},
        "choices": [choice.model_dump() for choice in result.choices],
        "tool_call": result.tool_call.model_dump() if result.tool_call else None,
    }


def from_record(record: dict[str, Any]) -> TurnResult:
    """A stored record as a replayed result; a record from before choices were stored is one choice that stopped."""
    usage = record.get("usage") or {}
    choices = [WrittenReply.model_validate(choice) for choice in record.get("choices") or []]
    tool_call = ToolCall.model_validate(record["tool_call"]) if record.get("tool_call") else None
    if not choices and tool_call is None:
        choices = [WrittenReply(text=record["reply"], grounded=record["grounded"], finish_reason="stop",
                                completion_tokens=usage.get("completion_tokens", 0))]
    readings = {"image": record.get("images") or []}
    if record.get("transcript"):
        readings["audio"] = [{"text": record["transcript"]}]
    return TurnResult(
        turn=record["turn"], state=DialogueState.model_validate(record["state"]), action=record["action"],
        choices=choices, readings={name: items for name, items in readings.items() if items}, tool_call=tool_call,
        replayed=True, prompt_tokens=usage.get("prompt_tokens", 0),
        completion_tokens=usage.get("completion_tokens", 0), timings_ms=record.get("timings_ms") or {},
    )

