"""Serving the OpenAI-compatible chat API on top of the turn pipeline: protocol in app/schemas_openai.py,
HTTP in app/api/openai_compat.py, the steps of a turn in app/pipeline.py.

Stateless (no X-Session-Id): the dialogue state is rebuilt from the request alone. Earlier user messages are
folded into the state one by one (perception and tracking, no reply written), assistant messages become the
history, and the last user message is answered. Nothing is stored.
Stateful (X-Session-Id): the last user message is one turn of that native session, as POST .../turns would run
it (lock, state, history, Idempotency-Key); earlier messages are the client's copy and are not used.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.config import Settings
from app.dialogue.state import DialogueState
from app.errors import ApiError
from app.pipeline import RetryKey, TurnPipeline, UserTurn
from app.schemas import TurnResponse
from app.schemas_openai import (
    MODEL_ID,
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    CompletionUsage,
    Delta,
    ModelCard,
    ModelList,
    ParleyExtras,
    SpokenReply,
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
    """A chat request's messages, decoded (app/api/openai_body.py)."""

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


async def run_chat(pipeline: TurnPipeline, conversation: DecodedChat, target: ChatTarget) -> TurnResponse:
    if target.session_id is not None:
        result = await pipeline.run_turn(target.tenant, target.session_id, conversation.last,
                                         retry_key=target.retry_key)
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
        result = await pipeline.respond(state, history, conversation.last)
        result.timings_ms["total"] = round((time.perf_counter() - started) * 1000, 1)  # folding included
    # Slot values are personal data (a product, an issue in the user's words): only their names are logged.
    log.info("chat completion: %s, action %s, intent %s, slots %s", "session turn" if target.session_id else
             "stateless", result.action, result.state.intent, sorted(result.state.slots))
    return result


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def to_completion(result: TurnResponse, *, model: str, target: ChatTarget) -> ChatCompletion:
    return ChatCompletion(
        id=completion_id(), created=int(time.time()), model=model,
        choices=[Choice(message=AssistantMessage(content=result.reply, audio=_spoken(result)), finish_reason="stop")],
        usage=_usage(result), parley=_extras(result, target),
    )


def to_chunks(result: TurnResponse, *, model: str, target: ChatTarget, include_usage: bool) -> list[ChatCompletionChunk]:
    """The reply as OpenAI stream chunks: the role, the content word by word, the spoken reply when asked for,
    the finish (with `parley`), and with include_usage a last chunk with no choices and the token counts."""
    common = {"id": completion_id(), "created": int(time.time()), "model": model}
    chunks = [ChatCompletionChunk(**common, choices=[ChunkChoice(delta=Delta(role="assistant", content=""))])]
    chunks += [ChatCompletionChunk(**common, choices=[ChunkChoice(delta=Delta(content=piece))])
               for piece in _pieces(result.reply)]
    if result.reply_audio is not None:
        chunks.append(ChatCompletionChunk(**common, choices=[ChunkChoice(delta=Delta(audio=_spoken(result)))]))
    chunks.append(ChatCompletionChunk(**common, choices=[ChunkChoice(delta=Delta(), finish_reason="stop")],
                                      parley=_extras(result, target)))
    if include_usage:
        chunks.append(ChatCompletionChunk(**common, choices=[], usage=_usage(result)))
    return chunks


def _pieces(text: str) -> list[str]:
    """Word-sized pieces that join back to `text` exactly (each carries its leading whitespace)."""
    pieces: list[str] = []
    for word in text.split(" "):
        pieces.append(word if not pieces else " " + word)
    return [piece for piece in pieces if piece]


def _spoken(result: TurnResponse) -> SpokenReply | None:
    if result.reply_audio is None:
        return None
    return SpokenReply(id=f"audio-{uuid.uuid4().hex}", data=result.reply_audio.data, expires_at=int(time.time()),
                       transcript=result.reply)


def _usage(result: TurnResponse) -> CompletionUsage:
    """The decoder's tokens for the answered message (folding earlier messages decodes nothing)."""
    prompt, completion = result.usage.prompt_tokens, result.usage.completion_tokens
    return CompletionUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _extras(result: TurnResponse, target: ChatTarget) -> ParleyExtras:
    return ParleyExtras(
        session_id=target.session_id, turn=result.turn if target.session_id else None, action=result.action,
        grounded=result.grounded, transcript=result.transcript, state=result.state,
    )
