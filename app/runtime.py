"""What the server holds while it runs: the store, the models and the pipeline built on them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from app.config import Settings
from app.dialogue.domain import Domain, load_domain
from app.dialogue.sentiment import SentimentAnalyzer
from app.dialogue.tracker import DialogueTracker, IntentClassifier
from app.pipeline import Encoders, TurnPipeline
from app.schemas import ModelStatus
from app.store import SessionStore
from models.decoder import CausalLMDecoder
from models.registry import Placement, default_decoder, default_text_model, resolve_placement, resolve_source
from models.speech import load_speech_encoder
from models.text import TextEncoder
from models.vision import load_vision_encoder

log = logging.getLogger(__name__)


ModelLoader = tuple[str, Callable[[], Any]]  # (where the model comes from, for /readyz; a blocking loader)


def model_loaders(settings: Settings, placement: Placement) -> dict[str, ModelLoader]:
    """How each model the pipeline needs is loaded, by name; nothing loads until a loader is called."""
    cache = settings.data_dir / "models"
    offline = settings.hf_offline
    vision_source = settings.caption_model or settings.vision_backbone or "default (OCR, barcodes, faces)"
    return {
        "text": (settings.text_model, lambda: TextEncoder.load(
            resolve_source(settings.text_model, default=default_text_model), placement=placement, offline=offline)),
        "speech": (settings.speech_model, lambda: load_speech_encoder(
            settings.speech_model, placement=placement, offline=offline, cache_dir=cache)),
        "vision": (vision_source, lambda: load_vision_encoder(
            caption_model=settings.caption_model, backbone=settings.vision_backbone, placement=placement,
            offline=offline)),
        "decoder": (settings.decoder, lambda: CausalLMDecoder.load(
            resolve_source(settings.decoder, default=lambda: default_decoder(cache)), placement=placement,
            offline=offline)),
    }


@dataclass
class Runtime:
    settings: Settings
    store: SessionStore
    models: dict[str, ModelStatus] = field(default_factory=dict)
    pipeline: TurnPipeline | None = None
    load_error: str | None = None
    # Model name -> a loader used instead of the configured one: deploy/ray puts proxies to its
    # model deployments here, so the same pipeline runs on models that live in other processes.
    overrides: dict[str, ModelLoader] = field(default_factory=dict)

    def load(self) -> None:
        """Load every model and build the pipeline; blocking, so run it off the event loop."""
        settings = self.settings
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        placement = resolve_placement(settings.device)
        domain = load_domain(settings.domain_path)
        loaders = model_loaders(settings, placement) | self.overrides
        try:
            models = {name: self._timed(name, source, placement, load) for name, (source, load) in loaders.items()}
        except Exception as exc:
            self.load_error = str(exc)
            raise
        text = models["text"]
        tracker = DialogueTracker(domain, _intent_classifier(domain, text), SentimentAnalyzer())
        self.pipeline = TurnPipeline(
            self.store, tracker, encoders=Encoders(text=text, speech=models["speech"], vision=models["vision"]),
            decoder=models["decoder"], max_new_tokens=settings.decoder_max_new_tokens,
        )
        log.info("models ready: %s", ", ".join(f"{m.name} {m.load_s:.1f}s" for m in self.models.values()))

    def _timed(self, name: str, source: str, placement: Placement, load):  # noqa: ANN001 - any model
        status = ModelStatus(name=name, source=source, device=placement.describe(), status="loading")
        self.models[name] = status
        log.info("loading %s model from %s on %s", name, source, status.device)
        started = time.perf_counter()
        try:
            model = load()
        except Exception as exc:
            status.status, status.error = "failed", str(exc)
            log.error("loading %s model failed: %s", name, exc)
            raise
        status.status, status.load_s = "ready", round(time.perf_counter() - started, 2)
        return model


def _intent_classifier(domain: Domain, encoder: TextEncoder) -> IntentClassifier:
    names = [name for name, intent in domain.intents.items() for _ in intent.examples]
    examples = [text for intent in domain.intents.values() for text in intent.examples]
    embeddings = encoder.predict_batch(examples)  # (E, D); also warms the encoder up
    return IntentClassifier(names, np.asarray(embeddings))
