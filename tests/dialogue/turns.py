"""One turn through the tracker as the pipeline runs it."""

from app.dialogue.state import DialogueState
from app.dialogue.tracker import DialogueTracker, Evidence, TurnAnalysis
from models.text import TextEncoder


def say(tracker: DialogueTracker, encoder: TextEncoder, state: DialogueState, text: str, modality: str = "text",
        ) -> tuple[DialogueState, TurnAnalysis]:
    """`text` typed, spoken (modality "audio": a transcript) or read off a photo (modality "image": OCR text,
    which is evidence but not an utterance); the utterance and each of its clauses are embedded."""
    utterance = "" if modality == "image" else text
    texts = tracker.texts_to_embed(utterance)
    vectors = encoder.predict_batch(texts) if texts else []
    return tracker.update(state, tracker.turn_input((Evidence(text, modality),), utterance, vectors))
