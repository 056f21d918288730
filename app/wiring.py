"""What the server holds while it runs: the store, the models and the pipeline built on them."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from app.batching import ContinuousDecoder, MicroBatcher, StepDecoder, content_key
from app.config import Settings
from app.dialogue.acceptance import check_wording
from app.dialogue.actions import HANDOFF_RETRIES, HANDOFF_TIMEOUT_S, WebhookClient, worst_case_s
from app.dialogue.domain import Domain, load_domain
from app.dialogue.knowledge import KnowledgeBase, knowledge_path, load_knowledge
from app.dialogue.sentiment import SentimentAnalyzer
from app.dialogue.tracker import DialogueTracker, IntentClassifier
from app.modalities import MODALITIES
from app.observability.metrics import Metrics
from app.pipeline import Encoders, TurnPipeline
from app.schemas import ModelStatus
from app.store.base import SessionStore
from models.decoder import CausalLMDecoder, Decoder
from models.fused_decoder import FusedSeq2SeqDecoder
from models.registry import (DEFAULT, SMOLLM2, Placement, default_decoder, default_text_model, resolve_placement,
                             resolve_source, shipped_fused_checkpoint)
from models.remote import OpenAIDecoder
from models.speech import load_speech_encoder
from models.text import TextEncoder
from models.tts import load_synthesizer
from models.vision import load_vision_encoder

log = logging.getLogger(__name__)

FUSED = "fused:"  # PARLEY_DECODER=fused:<dir>
# transformers sets torch's process-wide default dtype while it builds a model: two loads at once (two apps in
# one process, as the replica tests run them) could build a float32 encoder's layers in the bfloat16 decoder's dtype.
_LOADING = threading.Lock()


class ModelLoader(NamedTuple):
    source: str  # where the model comes from, as /readyz shows it
    device: str  # where it runs, e.g. "cpu/float32"
    load: Callable[[], Any]  # blocking


def model_loaders(settings: Settings, metrics: Metrics) -> dict[str, ModelLoader]:
    """How each model the pipeline needs is loaded, by name; nothing loads until a loader is called."""
    placement = resolve_placement(settings.device)
    decoder_placement = resolve_placement(settings.device, cpu_dtype=settings.decoder_cpu_dtype)
    cache = settings.data_dir / "models"
    offline = settings.hf_offline
    vision_source = settings.caption_model or settings.vision_backbone or "default (OCR, barcodes, faces)"
    return {
        "text": ModelLoader(settings.text_model, placement.describe(), lambda: TextEncoder.load(
            resolve_source(settings.text_model, default=default_text_model), placement=placement, offline=offline)),
        "speech": ModelLoader(settings.speech_model, placement.describe(), lambda: load_speech_encoder(
            settings.speech_model, placement=placement, offline=offline, cache_dir=cache)),
        "vision": ModelLoader(vision_source, placement.describe(), lambda: load_vision_encoder(
            caption_model=settings.caption_model, backbone=settings.vision_backbone, placement=placement,
            offline=offline)),
        "decoder": ModelLoader(settings.decoder, decoder_placement.describe(),
                               lambda: load_decoder(settings, decoder_placement, metrics)),
        "tts": ModelLoader(f"PARLEY_TTS={settings.tts}", resolve_placement("cpu").describe(), lambda: load_synthesizer(settings.tts)),
    }


# A causal LM's reply takes its draft's length and a half (pipeline.draft_budget), at most this: room for the
# domain's longest drafts (about 70 SmolLM2 tokens; at 64 those replies were cut mid-sentence)
CAUSAL_REPLY_TOKENS = 128


def reply_tokens(decoder: Decoder) -> int:
    """A reply's budget when PARLEY_DECODER_MAX_NEW_TOKENS is unset: a fused decoder's own reply length (the
    bank's longest phrasings are over 64 tokens), CAUSAL_REPLY_TOKENS for the others."""
    return getattr(decoder, "max_reply_tokens", None) or CAUSAL_REPLY_TOKENS


def load_decoder(settings: Settings, placement: Placement, metrics: Metrics) -> Decoder:
    """PARLEY_DECODER: "default" -> the FusedSeq2Seq shipped in the package (SmolLM2 where none is);
    "fused:<dir>" -> a FusedSeq2Seq trained with `parley train`, reading the encoders' features (checked
    against them once they are loaded); "smollm2", a Hugging Face id or a local folder -> a local causal LM
    rewording the policy's draft; both local kinds are decoded together across sessions.
    "openai:<base-url>#<model>" -> that model on an OpenAI-compatible server, which batches on its own."""
    spec = settings.decoder
    if spec.startswith("openai:"):
        key = settings.decoder_api_key.get_secret_value() if settings.decoder_api_key else None
        return OpenAIDecoder.from_spec(spec, api_key=key)
    shipped = shipped_fused_checkpoint()
    if spec == DEFAULT and shipped is not None:
        spec = f"{FUSED}{shipped}"
    model: StepDecoder
    if spec.startswith(FUSED):
        model = FusedSeq2SeqDecoder.load(spec.removeprefix(FUSED), placement=placement)
    else:
        source = resolve_source(DEFAULT if spec == SMOLLM2 else spec,
                                default=lambda: default_decoder(settings.data_dir / "models"))
        model = CausalLMDecoder.load(source, placement=placement, offline=settings.hf_offline)
    return ContinuousDecoder(model, max_batch_size=settings.decoder_max_batch,
                             on_batch=metrics.observe_inference, on_depth=metrics.set_queue_depth)


@dataclass
class Runtime:
    settings: Settings
    store: SessionStore
    metrics: Metrics
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
        domain = load_domain(settings.domain_path)
        check_wording(domain)
        knowledge_file = knowledge_path(settings.domain_path)
        entries = load_knowledge(knowledge_file) if knowledge_file is not None else ()  # a bad file fails before models load
        loaders = model_loaders(settings, self.metrics) | self.overrides
        try:
            webhooks = _webhooks(settings, domain)  # before minutes of model loading: a config mistake fails fast
            models = {name: self._timed(name, loader) for name, loader in loaders.items()}
            self._check_features(models["decoder"], speech=models["speech"], vision=models["vision"])
        except Exception as exc:
            self.load_error = str(exc)
            raise
        text, speech, vision, decoder, voice = (models[n] for n in ("text", "speech", "vision", "decoder", "tts"))
        if voice is None:
            del self.models["tts"]  # off, or nothing to speak with: not a model that is missing
        else:
            self.models["tts"].source = voice.source
        tracker = DialogueTracker(domain, _intent_classifier(domain, text), SentimentAnalyzer())
        batched: dict[str, Any] = {"max_batch_size": settings.batch_max_size, "max_wait_ms": settings.batch_max_wait_ms,
                                   "on_batch": self.metrics.observe_inference, "on_depth": self.metrics.set_queue_depth}
        encoders = Encoders(
            text=MicroBatcher("text", lambda texts: list(text.predict_batch(texts)), **batched),
            # A stateless client re-sends the same photo or clip every turn: each encoder answers it once.
            media={modality.name: MicroBatcher(
                modality.encoder, modality.batch(models[modality.encoder], decoder.wants_features), **batched,
                cache_key=content_key(f"{self.models[modality.encoder].source}:{decoder.wants_features}"),
                cache_entries=settings.encoder_cache_entries)
                   for modality in MODALITIES.values()},
        )
        knowledge = KnowledgeBase(entries, text.predict_batch) if entries else None  # embedded once, here
        self.pipeline = TurnPipeline(self.store, tracker, encoders=encoders, decoder=decoder,
                                     max_new_tokens=settings.decoder_max_new_tokens or reply_tokens(decoder),
                                     webhooks=webhooks, voice=voice,
                                     knowledge=knowledge)
        log.info("models ready: %s", ", ".join(f"{m.name} {m.load_s:.1f}s" for m in self.models.values()))

    async def aclose(self) -> None:
        """Stop the batchers' workers and the decoding thread."""
        if self.pipeline is not None:
            for batcher in self.pipeline.encoders.all():
                await batcher.aclose()
            await self.pipeline.decoder.aclose()
            if self.pipeline.webhooks is not None:
                await self.pipeline.webhooks.aclose()

    def _check_features(self, decoder: Decoder, *, speech: Any, vision: Any) -> None:
        """A fused decoder must get features of the sizes it was trained on: else fail now, not per turn."""
        model = getattr(decoder, "model", decoder)  # the ContinuousDecoder's model
        if not isinstance(model, FusedSeq2SeqDecoder):
            return
        try:
            model.check_encoders(image_dim=vision.feature_dim, audio_dim=speech.feature_dim)
        except ValueError as exc:
            self.models["decoder"].status, self.models["decoder"].error = "failed", str(exc)
            log.error("the fused decoder does not fit the encoders: %s", exc)
            raise

    def _timed(self, name: str, loader: ModelLoader) -> Any:
        status = ModelStatus(name=name, source=loader.source, device=loader.device, status="loading")
        self.models[name] = status
        log.info("loading %s model from %s on %s", name, loader.source, status.device)
        started = time.perf_counter()
        try:
            with _LOADING:
                model = loader.load()
        except Exception as exc:
            status.status, status.error = "failed", str(exc)
            log.error("loading %s model failed: %s", name, exc)
            raise
        status.status, status.load_s = "ready", round(time.perf_counter() - started, 2)
        return model


def _webhooks(settings: Settings, domain: Domain) -> WebhookClient | None:
    """Webhooks are signed: actions in the domain or a handoff URL without the secret fail at start-up."""
    if settings.action_secret is None:
        if settings.handoff_url or domain.actions:
            raise ValueError("PARLEY_ACTION_SECRET is not set, but webhooks are configured "
                             f"(handoff URL: {settings.handoff_url or 'none'}; actions: {', '.join(domain.actions) or 'none'})")
        return None
    # A call runs under the session's lock: it must end well before a lock left by a crashed worker frees itself.
    budget_s = settings.lock_ttl_ms / 1000 / 2
    calls = {name: worst_case_s(spec.timeout_s, spec.retries) for name, spec in domain.actions.items()}
    calls["handoff"] = worst_case_s(HANDOFF_TIMEOUT_S, HANDOFF_RETRIES)
    for name, longest in calls.items():
        if longest > budget_s:
            raise ValueError(f"webhook '{name}' can take {longest:.0f} s with its timeout and retries, more than half "
                             f"of PARLEY_LOCK_TTL_MS ({settings.lock_ttl_ms} ms): lower them or raise the lock TTL")
    return WebhookClient(settings.action_secret.get_secret_value().encode(), handoff_url=settings.handoff_url)


def _intent_classifier(domain: Domain, encoder: TextEncoder) -> IntentClassifier:
    return IntentClassifier.of(domain, encoder.predict_batch)  # also warms the encoder up
