"""Serving the OpenAI-compatible chat API on top of the turn pipeline: protocol in app/api/openai/protocol.py,
HTTP in app/api/openai/routes.py, the steps of a turn in app/pipeline.py.

Stateless (no X-Session-Id): the dialogue state is rebuilt from the request alone. Earlier user messages are
folded into the state one by one (perception and tracking, no reply written), assistant messages become the
history, and the last user message is answered. Nothing is stored.
Stateful (X-Session-Id): the last user message is one turn of that native session, as POST .../turns would run
it (lock, state, history, Idempotency-Key); earlier messages are the client's copy and are not used.

Sampling, length and stop parameters become ReplyOptions (app/reply.py); `tools` a ToolOffer
(app/dialogue/tools.py): a turn whose state fills a tool's arguments answers with that tool call.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.config import Settings
from app.dialogue.state import DialogueState
from app.dialogue.tools import ToolCall, ToolOffer, ToolSpec, check_schema
from app.api.errors import ApiError
from app.pipeline import RetryKey, TurnPipeline, UserTurn
from app.reply import ReplyOptions, TurnResult, WrittenReply
from app.api.openai.protocol import (
    MODEL_ID,
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    CompletionUsage,
    Delta,
    ModelCard,
    ModelList,
    ParleyExtras,
    SpokenReply,
    ToolCallDelta,
    ToolCallFunction,
    ToolCallOut,
)

log = logging.getLogger(__name__)

STARTED = int(time.time())  # `created` of the model card: when this process started serving it


@dataclass(frozen=True)
class PastMessage:
    """A message before the one being answered."""

    role: Literal["user", "assistant"]
    text: str  # what was typed (user) or replied (assistant)
    turn: UserTurn | None = None  # user messages: the decoded turn, folded into the dialogue state


@dataclass(frozen=True)
class DecodedChat:
    """A chat request's messages, decoded (app/api/openai/body.py)."""

    past: tuple[PastMessage, ...]  # empty when a session holds the conversation
    last: UserTurn  # the last message, always the user's: this is what gets the reply


@dataclass(frozen=True)
class ChatTarget:
    """Where a completion goes: a tenant, and with X-Session-Id one of its native sessions."""

    tenant: str
    session_id: str | None = None
    retry_key: RetryKey | None = None


def decoder_name(setting: str) -> str:
    """The decoder as clients may see it: its model name, never a server address or a local path.

    "openai:http://gpu-box:8001/v1#qwen" -> "qwen"; "fused:/srv/ckpt" -> "fused:ckpt"; "/models/lm" -> "lm"."""
    if setting.startswith("openai:"):
        return setting.rpartition("#")[2]
    scheme, _, rest = setting.rpartition(":") if setting.startswith("fused:") else ("", "", setting)
    name = Path(rest).name if Path(rest).expanduser().exists() or rest.startswith(("/", ".", "~")) else rest
    return f"{scheme}:{name}" if scheme else name


def served_models(settings: Settings) -> ModelList:
    return ModelList(data=[ModelCard(id=MODEL_ID, created=STARTED,
                                     parley={"decoder": decoder_name(settings.decoder)})])


def check_model(model: str, settings: Settings) -> None:
    """`model` must name what is served: "parley" or the decoder's name (see decoder_name)."""
    if model not in (MODEL_ID, decoder_name(settings.decoder)):
        raise ApiError(404, "model_not_found", f"model {model!r} is not served here; use {MODEL_ID!r} "
                       "(GET /v1/models lists the models)", param="model")


def reply_options(body: ChatCompletionRequest, *, stateful: bool) -> ReplyOptions:
    """The request's reply parameters (types and ranges were checked by the schema); 400 for what is valid
    OpenAI but not served here."""
    if body.response_format is not None and body.response_format.type != "text":
        raise ApiError(400, "unsupported_response_format", f"response_format {body.response_format.type!r} is not "
                       'supported: replies are the dialogue policy\'s plain text; use {"type": "text"}',
                       param="response_format")
    if stateful and (body.n or 1) > 1:
        raise ApiError(400, "unsupported_n", "n > 1 cannot be used with X-Session-Id: a session commits one reply "
                       "per turn, so which of the choices would it keep? Send n > 1 without a session", param="n")
    limits = [limit for limit in (body.max_tokens, body.max_completion_tokens) if limit is not None]
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    return ReplyOptions(max_tokens=min(limits) if limits else None, temperature=body.temperature or 0.0,
                        top_p=body.top_p if body.top_p is not None else 1.0, stop=stop, seed=body.seed, n=body.n or 1)


def tool_offer(body: ChatCompletionRequest) -> ToolOffer | None:
    """The request's tools and tool_choice; 400 for a schema that is not one or a choice that names no tool."""
    if not body.tools:
        if body.tool_choice not in (None, "none", "auto"):
            raise ApiError(400, "invalid_request", "tool_choice needs tools", param="tool_choice")
        return None
    for index, tool in enumerate(body.tools):
        if (problem := check_schema(tool.function.parameters)) is not None:
            raise ApiError(400, "invalid_tool_schema", f"tool {tool.function.name!r}: parameters is not a JSON "
                           f"schema: {problem}", param=f"tools.{index}.function.parameters")
    chosen = body.tool_choice or "auto"
    choice = chosen if isinstance(chosen, str) else chosen.function.name
    if not isinstance(chosen, str) and choice not in {tool.function.name for tool in body.tools}:
        raise ApiError(400, "invalid_request", f"tool_choice names {choice!r}, which is not among the tools",
                       param="tool_choice")
    return ToolOffer(tuple(ToolSpec(t.function.name, t.function.parameters) for t in body.tools), choice)


async def run_chat(
    pipeline: TurnPipeline, conversation: DecodedChat, target: ChatTarget, *, options: ReplyOptions,
    tools: ToolOffer | None,
) -> TurnResult:
    if target.session_id is not None:
        result = await pipeline.run_turn(target.tenant, target.session_id, conversation.last,
                                         retry_key=target.retry_key, options=options, tools=tools)
    else:
        started = time.perf_counter()
        state = DialogueState()
        history: list[dict] = []
        for message in conversation.past:
            if message.turn is not None:
                state = await pipeline.track(state, message.turn)
            history.append({"role": message.role, "text": message.text, "turn": state.turns})
        # Folding runs no webhooks: a conversation handed over before this request was announced then,
        # so the handoff webhook is not called again for it.
        state.handoff_notified = state.handed_off
        result = await pipeline.respond(state, history, conversation.last, options=options, tools=tools)
        result.timings_ms["total"] = round((time.perf_counter() - started) * 1000, 1)  # folding included
    # Slot values are personal data (a product, an issue in the user's words): only their names are logged.
    log.info("chat completion: %s, action %s, intent %s, slots %s", "session turn" if target.session_id else
             "stateless", result.action, result.state.intent, sorted(result.state.slots))
    return result


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def to_completion(result: TurnResult, *, model: str, target: ChatTarget) -> ChatCompletion:
    if result.tool_call is not None:
        call = _tool_call(result.tool_call)
        choices = [Choice(message=AssistantMessage(content=None, tool_calls=[call]), finish_reason="tool_calls")]
    else:
        choices = [Choice(index=index, message=AssistantMessage(content=reply.text, audio=_spoken(result, index)),
                          finish_reason=reply.finish_reason) for index, reply in enumerate(result.written())]
    return ChatCompletion(id=completion_id(), created=int(time.time()), model=model, choices=choices,
                          usage=_usage(result), parley=_extras(result, target))


def to_chunks(result: TurnResult, *, model: str, target: ChatTarget, include_usage: bool) -> list[ChatCompletionChunk]:
    """The reply as OpenAI stream chunks, per choice: the role, the content word by word (or the tool call in
    one delta), the spoken reply when asked for, the finish (with `parley`); with include_usage a last chunk
    with no choices and the token counts."""
    common = {"id": completion_id(), "created": int(time.time()), "model": model}

    def chunk(index: int, delta: Delta, finish: str | None = None, **extra) -> ChatCompletionChunk:
        return ChatCompletionChunk(**common, choices=[ChunkChoice(index=index, delta=delta, finish_reason=finish)],
                                   **extra)

    if result.tool_call is not None:
        call = ToolCallDelta(**_tool_call(result.tool_call).model_dump())
        chunks = [chunk(0, Delta(role="assistant", content=None)), chunk(0, Delta(tool_calls=[call])),
                  chunk(0, Delta(), "tool_calls", parley=_extras(result, target))]
    else:
        chunks = [piece for index, reply in enumerate(result.written())
                  for piece in _reply_chunks(reply, index, chunk, _spoken(result, index), _extras(result, target))]
    if include_usage:
        chunks.append(ChatCompletionChunk(**common, choices=[], usage=_usage(result)))
    return chunks


def _reply_chunks(reply: WrittenReply, index: int, chunk: Callable[..., ChatCompletionChunk],
                  spoken: SpokenReply | None, extras: ParleyExtras) -> list[ChatCompletionChunk]:
    chunks = [chunk(index, Delta(role="assistant", content=""))]
    chunks += [chunk(index, Delta(content=piece)) for piece in _pieces(reply.text)]
    if spoken is not None:
        chunks.append(chunk(index, Delta(audio=spoken)))
    chunks.append(chunk(index, Delta(), reply.finish_reason, parley=extras))
    return chunks


def _tool_call(call: ToolCall) -> ToolCallOut:
    arguments = json.dumps(call.arguments, ensure_ascii=False)
    return ToolCallOut(id=call.id, function=ToolCallFunction(name=call.name, arguments=arguments))


def _pieces(text: str) -> list[str]:
    """Word-sized pieces that join back to `text` exactly (each carries its leading whitespace)."""
    pieces: list[str] = []
    for word in text.split(" "):
        pieces.append(word if not pieces else " " + word)
    return [piece for piece in pieces if piece]


def _spoken(result: TurnResult, index: int = 0) -> SpokenReply | None:
    """The spoken reply, on the first choice (the one the turn's reply is)."""
    if result.reply_audio is None or index:
        return None
    return SpokenReply(id=f"audio-{uuid.uuid4().hex}", data=result.reply_audio.data, expires_at=int(time.time()),
                       transcript=result.reply)


def _usage(result: TurnResult) -> CompletionUsage:
    """The decoder's tokens for the answered message, its prompt counted once and every choice's reply (folding
    earlier messages decodes nothing; a tool call decodes nothing)."""
    prompt, completion = result.usage.prompt_tokens, result.usage.completion_tokens
    return CompletionUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _extras(result: TurnResult, target: ChatTarget) -> ParleyExtras:
    return ParleyExtras(
        session_id=target.session_id, turn=result.turn if target.session_id else None, action=result.action,
        grounded=result.grounded, transcript=result.transcript, state=result.state,
    )
