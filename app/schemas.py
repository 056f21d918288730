"""Public request and response models: the OpenAPI contract. Pydantic only."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.dialogue.state import DialogueState


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


class TurnRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "Hi, my lamp arrived broken. Order A7Q-4412."}]},
    )

    text: str | None = Field(None, description="what the user typed")


class ImageReading(BaseModel):
    caption: str | None = None
    ocr_text: str | None = None
    labels: list[str] = Field(default_factory=list)


class TurnResponse(BaseModel):
    turn: int = Field(examples=[3])
    reply: str = Field(examples=["I have your order number is A7Q-4412."])
    action: str = Field(description="what the policy decided: respond, ask_slot, recall, handoff, fallback")
    grounded: bool = Field(description="false when the model's wording dropped a fact and the policy's was used")
    transcript: str | None = None
    images: list[ImageReading] = Field(default_factory=list)
    state: DialogueState
    timings_ms: dict[str, float] = Field(examples=[{"lock": 0.4, "encode": 12.0, "decode": 2100.0, "total": 2150.0}])


class HistoryEntry(BaseModel):
    role: Literal["user", "assistant"]
    text: str
    turn: int
    modalities: list[str] = Field(default_factory=list)
    at: str
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
