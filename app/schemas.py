"""Public request and response models: the OpenAPI contract. Pydantic only."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.dialogue.state import DialogueState

if TYPE_CHECKING:
    from app.turn import TurnResult


class ErrorBody(BaseModel):
    code: str = Field(examples=["session_not_found"])
    message: str = Field(examples=["no session with this id: create one with POST /v1/sessions"])


class ErrorResponse(BaseModel):
    error: ErrorBody


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"metadata": {"channel": "web"}}]})

    metadata: dict[str, Any] = Field(default_factory=dict, description="free-form client data kept with the session")


class SessionCreated(BaseModel):
    id: str = Field(examples=["7f3c0b6a9d2e4f1a8b5c6d7e8f9a0b1c"])
    created_at: str = Field(examples=["2026-11-23T10:00:00.000Z"])
    state: DialogueState


class MediaInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: str = Field(description="base64, or a data: URL (data:image/png;base64,...); remote URLs are refused")


class TurnRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "Hi, my lamp arrived broken. Order A7Q-4412."},
                {"text": "here is my receipt", "images": [{"data": "data:image/png;base64,iVBORw0KGgo..."}]},
                {"audio": {"data": "UklGRiQAAABXQVZFZm10IBAAAAABAAEA..."}},
            ]
        },
    )

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Self-contained: no `$defs`/`$ref`. The turn route embeds this schema in the OpenAPI document by hand,
        where a local "#/$defs/MediaInput" does not resolve (clients and schemathesis then drop the JSON body)."""
        return _inline_defs(super().model_json_schema(*args, **kwargs))

    text: str | None = Field(None, description="what the user typed")
    images: list[MediaInput] = Field(default_factory=list, description="photos: PNG, JPEG, WebP or GIF")
    audio: MediaInput | None = Field(None, description="one voice clip: WAV, FLAC, OGG/Vorbis or MP3")
    reply_audio: bool = Field(False, description="also speak the reply: `reply_audio` in the response is a WAV")


def _inline_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace each {"$ref": "#/$defs/X"} by a copy of X and drop `$defs` (the models here are not recursive)."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve({**defs[ref.removeprefix("#/$defs/")], **{k: v for k, v in node.items() if k != "$ref"}})
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


class ImageReading(BaseModel):
    caption: str | None = Field(None, examples=["a document with text"])
    ocr_text: str | None = Field(None, examples=["Order No: A7Q-4412\nTotal: $37.50"])
    labels: list[str] = Field(default_factory=list, examples=[["document", "colour:white"]])
    barcodes: list[str] = Field(default_factory=list, examples=[["ORDER:KX-90817"]])


class ReplyAudio(BaseModel):
    mime_type: Literal["audio/wav"] = "audio/wav"
    data: str = Field(description="base64 of the WAV file (mono 16-bit PCM)", examples=["UklGRiQAAABXQVZFZm10..."])


class Usage(BaseModel):
    prompt_tokens: int = Field(0, description="tokens the decoder read (0 when the decoder does not count them)")
    completion_tokens: int = Field(0, description="tokens of the reply sent (the decoder's tokenizer's)")


class TurnResponse(BaseModel):
    turn: int = Field(examples=[3])
    reply: str = Field(examples=["Your order number is A7Q-4412."])
    action: str = Field(description="what the policy decided: respond, ask_slot, recall, acknowledge, handoff, "
                                    "fallback, action_unavailable (a backend webhook is down), answer (from the "
                                    "knowledge base), unknown_question (no entry answers it), off_topic")
    grounded: bool = Field(description="false when the model's wording dropped a fact, or said what a reply must "
                                       "not (an action that did not run, a refusal), and the policy's was used")
    transcript: str | None = Field(None, description="what was heard in the voice clip", examples=["My order number is 4512."])
    images: list[ImageReading] = Field(default_factory=list, description="what was read in each image, in order")
    state: DialogueState
    reply_audio: ReplyAudio | None = Field(None, description="the reply spoken, when the turn asked for it")
    replayed: bool = Field(False, description="true when this is the stored answer to an earlier request with "
                                              "the same Idempotency-Key; no new turn was run")
    usage: Usage = Field(default_factory=Usage, description="decoder tokens of this turn")
    timings_ms: dict[str, float] = Field(examples=[{"lock": 0.4, "encode": 12.0, "first_token": 180.0,
                                                    "decode": 2100.0, "total": 2150.0}],
                                         description="ms per step; first_token: from the turn's start to the first "
                                                     "reply token")

    @classmethod
    def of(cls, result: TurnResult) -> TurnResponse:
        """The pipeline's result (app/turn.py) in this wire form."""
        spoken = ReplyAudio(data=base64.b64encode(result.reply_audio).decode("ascii")) if result.reply_audio else None
        return cls(turn=result.turn, reply=result.reply, action=result.action, grounded=result.grounded,
                   transcript=result.transcript, images=[ImageReading(**image) for image in result.images],
                   state=result.state, reply_audio=spoken, replayed=result.replayed,
                   usage=Usage(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens),
                   timings_ms=result.timings_ms)


class HistoryEntry(BaseModel):
    role: Literal["user", "assistant"]
    text: str
    turn: int
    modalities: list[str] = Field(default_factory=list)
    at: str
    transcript: str | None = Field(None, description="on user entries with a voice clip")
    images: list[ImageReading] = Field(default_factory=list, description="on user entries with images")
    action: str | None = Field(None, description="the policy's decision, on assistant entries")


class SessionDetail(BaseModel):
    id: str
    created_at: str
    metadata: dict[str, Any]
    state: DialogueState
    history: list[HistoryEntry]


class ModelStatus(BaseModel):
    name: str
    source: str
    device: str
    status: Literal["loading", "ready", "failed"]
    load_s: float | None = None
    error: str | None = None


class Readiness(BaseModel):
    ready: bool
    redis: bool
    models: list[ModelStatus]
