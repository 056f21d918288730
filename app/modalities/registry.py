"""What the pipeline and the request parsers know about one kind of media, registered in one place.

A modality says how its bytes are decoded and limited, which encoder reads a decoded item (behind its own
batcher) and what the encoder's reading of it becomes: evidence for the tracker, words added to the
utterance, and what a reply shows of it. Text is not a modality here: it is the utterance every modality
adds to. Adding one (a PDF, say) is a module like app/modalities/image.py plus its line in MODALITIES
(app/modalities/__init__.py), and a loader in app/wiring.py if its encoder is a new model; the wire formats
that carry it (app/schemas.py, app/api/turn_body.py's field names, the OpenAI parts) name it there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.config import Settings
from app.dialogue.tracker import Evidence

BatchFunction = Callable[[list[Any]], list[Any]]  # decoded items -> one encoder output each, in order


def _adds_no_words(_: Any) -> str:
    return ""


@dataclass(frozen=True)
class Modality:
    name: str  # the key in TurnInput.media, a history entry's `modalities` and TurnResult.readings
    plural: str  # "images": span attributes and messages
    encoder: str  # the model that reads it (a loader name in app/wiring.py), also its batcher's metrics name
    single: bool  # at most one per turn (a voice clip); its hash is marked by name, so absent differs from empty
    max_items: Callable[[Settings], int]  # per turn
    max_bytes: Callable[[Settings], int]  # one item, encoded: checked before it is decoded
    decode: Callable[[bytes, Settings], Any]  # bytes -> what the encoder takes (no side effects; raises on bad media)
    batch: Callable[[Any, bool], BatchFunction]  # (the loaded encoder, whether the decoder wants features)
    evidence: Callable[[Any], list[Evidence]]  # one encoder output as the tracker reads it
    summary: Callable[[Any], dict[str, Any]]  # one encoder output as a reply shows and a record stores it (JSON)
    heard: Callable[[Any], str] = _adds_no_words  # words it adds to the utterance (a clip's transcript)
