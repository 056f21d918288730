"""What the server holds while it runs: the store, the models and the pipeline built on them."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from app.batching import ContinuousDecoder, MicroBatcher
from app.config import Settings
from app.dialogue.domain import Domain, load_domain
from app.dialogue.sentiment import SentimentAnalyzer
from app.dialogue.tracker import DialogueTracker, IntentClassifier
from app.metrics import Metrics
from app.pipeline import Encoders, TurnPipeline
from app.schemas import ModelStatus
from app.store import SessionStore
from models.decoder import CausalLMDecoder, Decoder
from models.fused_decoder import FusedSeq2SeqDecoder
from models.registry import Placement, default_decoder, default_text_model, resolve_placement, resolve_source
from models.speech import load_speech_encoder
from models.text import TextEncoder
from models.vision import load_vision_encoder

log = logging.getLogger(__name__)

FUSED = "fused:"  # PARLEY_DECODER=fused:<dir>: a FusedSeq2Seq trained with `parley train`


@dataclass
class Runtime:
    settings: Settings
    store: SessionStore
    metrics: Metrics
    models: dict[str, ModelStatus] = field(default_factory=dict)
    pipeline: TurnPipeline | None = None
    load_error: str | None = None

    def load(self) -> None:
        """Load every model and build the pipeline; blocking, so run it off the event loop."""
        settings = self.settings
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        placement = resolve_placement(settings.device)
        domain = load_domain(settings.domain_path)
        cache = settings.data_dir / "models"
        offline = settings.hf_offline
        try:
            text = self._timed("text", settings.text_model, placement, lambda: TextEncoder.load(
                resolve_source(settings.text_model, default=default_text_model), placement=placement, offline=offline))
            speech = self._timed("speech", settings.speech_model, placement, lambda: load_speech_encoder(
                settings.speech_model, placement=placement, offline=offline, cache_dir=cache))
            vision_source = settings.caption_model or settings.vision_backbone or "default (OCR, barcodes, faces)"
            vision = self._timed("vision", vision_source, placement, lambda: load_vision_encoder(
                caption_model=settings.caption_model, backbone=settings.vision_backbone, placement=placement,
                offline=offline))
            decoder_placement = resolve_placement(settings.device, cpu_dtype=settings.decoder_cpu_dtype)
            decoder = self._timed("decoder", settings.decoder, decoder_placement, lambda: self.load_decoder(
                decoder_placement, image_dim=vision.feature_dim, audio_dim=speech.feature_dim))
        except Exception as exc:
            self.load_error = str(exc)
            raise
        tracker = DialogueTracker(domain, _intent_classifier(domain, text), SentimentAnalyzer())
        batched = dict(max_batch_size=settings.batch_max_size, max_wait_ms=settings.batch_max_wait_ms,
                       on_batch=self.metrics.observe_inference, on_depth=self.metrics.set_queue_depth)
        encoders = Encoders(
            text=MicroBatcher("text", lambda texts: list(text.predict_batch(texts)), **batched),
            speech=MicroBatcher("speech", lambda clips: speech.predict_batch(
                clips, with_features=decoder.wants_features), **batched),
            vision=MicroBatcher("vision", vision.predict_batch, **batched),
        )
        self.pipeline = TurnPipeline(self.store, tracker, encoders=encoders, decoder=decoder,
                                     max_new_tokens=settings.decoder_max_new_tokens)
        log.info("models ready: %s", ", ".join(f"{m.name} {m.load_s:.1f}s" for m in self.models.values()))

    def load_decoder(self, placement: Placement, *, image_dim: int | None, audio_dim: int | None) -> Decoder:
        """PARLEY_DECODER: "default", a Hugging Face id or a local folder -> a local causal LM whose
        replies are decoded together across sessions; "fused:<dir>" -> a `parley train` checkpoint that
        reads the encoders' features (image_dim / audio_dim: what they give, None for none)."""
        settings = self.settings
        if settings.decoder.startswith(FUSED):
            return FusedSeq2SeqDecoder.load(settings.decoder.removeprefix(FUSED), placement=placement,
                                            image_dim=image_dim, audio_dim=audio_dim)
        source = resolve_source(settings.decoder, default=lambda: default_decoder(settings.data_dir / "models"))
        model = CausalLMDecoder.load(source, placement=placement, offline=settings.hf_offline)
        model.warm_up()
        return ContinuousDecoder(model, max_batch_size=settings.decoder_max_batch,
                                 on_batch=self.metrics.observe_inference, on_depth=self.metrics.set_queue_depth)

    async def aclose(self) -> None:
        """Stop the batchers' workers and the decoding thread."""
        if self.pipeline is not None:
            for batcher in (self.pipeline.encoders.text, self.pipeline.encoders.speech, self.pipeline.encoders.vision):
                await batcher.aclose()
            await self.pipeline.decoder.aclose()

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
