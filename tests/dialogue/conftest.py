"""The real MiniLM sentence encoder and a tracker on the packaged domain, loaded once for the dialogue tests."""

import pytest

from app.dialogue.domain import load_domain
from app.dialogue.sentiment import SentimentAnalyzer
from app.dialogue.tracker import DialogueTracker
from app.wiring import _intent_classifier
from models.registry import default_text_model, resolve_placement
from models.text import TextEncoder


@pytest.fixture(scope="session")
def encoder():
    return TextEncoder.load(str(default_text_model()), placement=resolve_placement("cpu"), offline=True)


@pytest.fixture(scope="session")
def tracker(encoder):
    domain = load_domain()
    return DialogueTracker(domain, _intent_classifier(domain, encoder), SentimentAnalyzer())
