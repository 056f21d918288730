"""Dialogue state s_t: what the tracker believes after each turn. JSON in, JSON out."""

from pydantic import BaseModel, Field

MODALITIES = ("text", "audio", "image")


class SlotSource(BaseModel):
    """Where a slot value came from, so a client can show why the bot believes it."""

    modality: str = Field(examples=["image"])
    turn: int = Field(examples=[2])
    confidence: float = Field(ge=0, le=1, examples=[0.96])


class EvidenceNote(BaseModel):
    """Something read or heard in an earlier turn, kept so later turns can be answered from it."""

    turn: int
    modality: str = Field(examples=["image"])
    text: str = Field(examples=["Order No: A7Q-4412 Total: $37.50"])


class DialogueState(BaseModel):
    intent: str | None = Field(None, description="the active task intent", examples=["damaged_item"])
    intent_confidence: float = 0.0
    last_act: str | None = Field(None, description="what the latest turn did (an intent or a meta act)")
    slots: dict[str, str] = Field(default_factory=dict, examples=[{"order_id": "A7Q-4412", "product": "lamp"}])
    slot_sources: dict[str, SlotSource] = Field(default_factory=dict)
    requested_slot: str | None = Field(None, description="the slot the last reply asked for")
    sentiment: str | None = Field(None, examples=["negative"])
    sentiment_score: float = Field(0.0, description="VADER compound score of the latest turn, -1..1")
    handed_off: bool = Field(False, description="a human agent has taken over this conversation")
    handoff_notified: bool = Field(False, description="the handoff webhook has received this conversation")
    turns: int = 0
    evidence: list[EvidenceNote] = Field(default_factory=list, description="recent transcripts and image readings")
