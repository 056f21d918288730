"""Voice clips: decoded to 16 kHz mono samples, transcribed by the speech encoder; the transcript is part of
what the user said."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.config import Settings
from app.dialogue.tracker import Evidence
from app.media.audio import decode_audio
from app.modalities.registry import BatchFunction, Modality
from models.speech import Transcript

SAMPLE_RATE = 16_000  # what the speech encoders take


def _decode(data: bytes, settings: Settings) -> np.ndarray:
    """(N,) float32 mono at SAMPLE_RATE."""
    return decode_audio(data, max_seconds=settings.max_audio_seconds, max_bytes=settings.max_audio_bytes,
                        sample_rate=SAMPLE_RATE)


def _batch(speech: Any, wants_features: bool) -> BatchFunction:
    return lambda clips: speech.predict_batch(clips, with_features=wants_features)


def _heard(transcript: Transcript) -> str:
    return transcript.text.strip()


def _evidence(transcript: Transcript) -> list[Evidence]:
    return [Evidence(transcript.text, "audio", transcript.confidence)] if transcript.text.strip() else []


def _summary(transcript: Transcript) -> dict[str, Any]:
    return {"text": transcript.text.strip(), "confidence": transcript.confidence}


AUDIO = Modality(
    name="audio", plural="audio", encoder="speech", single=True,
    max_items=lambda settings: 1, max_bytes=lambda settings: settings.max_audio_bytes,
    decode=_decode, batch=_batch, evidence=_evidence, summary=_summary, heard=_heard,
)
