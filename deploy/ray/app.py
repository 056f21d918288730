"""Parley on Ray Serve: the text, speech and vision encoders and the decoder run as deployments of
their own, each scaled on its own, behind Parley's unchanged HTTP API.

    ingress  Parley's FastAPI app (sessions in Redis, dialogue tracking, policy)
      -> text     TextEncoder.predict_batch
      -> speech   SpeechEncoder.predict_batch
      -> vision   VisionEncoder.predict_batch
      -> decoder  Decoder.stream, piece by piece (batched across sessions inside each replica)

The ingress builds the usual pipeline with proxies in place of local models (Runtime.overrides):
a proxy has the model's small interface and forwards each call to its deployment through a
handle. The ingress's micro-batchers still group concurrent turns before an encoder call, and
each decoder replica runs the usual continuous-batching decoder over the replies it is given.
Settings are read from the PARLEY_* environment of the process that builds the application and
travel with it to every replica, so all replicas load the same models.

    serve run deploy/ray/serve.yaml        # replicas and CPUs per deployment in that file
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import fields
from typing import Any

import torch
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from app.config import Settings
from app.main import create_app
from app.observability.metrics import Metrics
from app.wiring import ModelLoader, model_loaders
from models.decoder import GenerationStats, ReplyContext

MODELS = ("text", "speech", "vision", "decoder")  # deployment names, as serve.status() shows them
INGRESS = "ingress"
# A scheduling share, not a thread count: small enough that every deployment fits on a 2-core box.
# On a cluster give each deployment real CPUs (or GPUs) in serve.yaml.
DEFAULT_CPUS = 0.25


class _ModelReplica:
    """One model, loaded the way the single-process server loads it (app.wiring.model_loaders)."""

    def __init__(self, name: str, settings: Settings) -> None:
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        # The replica's own batch metrics stay in the replica; the ingress's /metrics has the turns.
        self.model = model_loaders(settings, Metrics())[name].load()
        self.calls = 0

    def info(self) -> dict[str, Any]:
        """Which process holds the model and how many calls it has served (for operators and tests)."""
        return {"pid": os.getpid(), "model": type(self.model).__name__, "calls": self.calls,
                "wants_features": getattr(self.model, "wants_features", False)}


@serve.deployment(ray_actor_options={"num_cpus": DEFAULT_CPUS})
class EncoderDeployment(_ModelReplica):
    def predict_batch(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.model.predict_batch(*args, **kwargs)


@serve.deployment(ray_actor_options={"num_cpus": DEFAULT_CPUS})
class DecoderDeployment(_ModelReplica):
    async def stream(self, context: ReplyContext, *, max_new_tokens: int) -> AsyncIterator[str | GenerationStats]:
        """The reply's pieces, then its GenerationStats (a caller's own stats object cannot travel)."""
        self.calls += 1
        stats = GenerationStats()
        async for piece in self.model.stream(context, max_new_tokens=max_new_tokens, stats=stats):
            yield piece
        yield stats


class EncoderProxy:
    """An encoder's `predict_batch`, run by its deployment. The pipeline calls encoders from worker
    threads (asyncio.to_thread), so blocking on the result here holds no event loop."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle

    def predict_batch(self, *args: Any, **kwargs: Any) -> Any:
        return self.handle.predict_batch.remote(*args, **kwargs).result()

    def connect(self) -> EncoderProxy:
        """Itself, once its deployment has a replica with the model loaded: /readyz stays 503 until
        every model can answer, as on a single server."""
        self.handle.info.remote().result()
        return self


class DecoderProxy:
    """The Decoder interface, run by the decoder deployment; pieces arrive as the replica yields them."""

    wants_features = False  # the remote decoder's own answer replaces this in connect()

    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle
        self.streaming = handle.options(stream=True)

    def connect(self) -> DecoderProxy:
        """Itself, once a decoder replica is up (see EncoderProxy.connect)."""
        self.wants_features = self.handle.info.remote().result()["wants_features"]
        return self

    async def stream(
        self, context: ReplyContext, *, max_new_tokens: int, stats: GenerationStats | None = None
    ) -> AsyncIterator[str]:
        async for item in self.streaming.stream.remote(context, max_new_tokens=max_new_tokens):
            if not isinstance(item, GenerationStats):
                yield item
            elif stats is not None:  # the replica's counts, into the caller's own object
                for counted in fields(item):
                    setattr(stats, counted.name, getattr(item, counted.name))

    async def aclose(self) -> None:
        """Nothing to stop here: the deployment owns the model, and Serve stops its replicas."""


@serve.deployment(ray_actor_options={"num_cpus": DEFAULT_CPUS})
@serve.ingress()
class ParleyIngress:
    """Parley's own app, its lifespan included; only the models are elsewhere."""

    def __init__(self, settings: Settings, **handles: DeploymentHandle) -> None:
        self.settings = settings
        self.proxies = {name: DecoderProxy(h) if name == "decoder" else EncoderProxy(h) for name, h in handles.items()}

    def __serve_build_asgi_app__(self):  # noqa: ANN204 - an ASGI app
        overrides: dict[str, ModelLoader] = {
            name: ModelLoader(f"ray deployment '{name}'", "ray", proxy.connect) for name, proxy in self.proxies.items()
        }
        return create_app(self.settings, model_overrides=overrides)


def build_app(settings: Settings | None = None, *, options: Mapping[str, Mapping[str, Any]] | None = None
              ) -> Application:
    """The Serve application. `options`: deployment name (MODELS, INGRESS) -> Ray Serve deployment
    options such as num_replicas, ray_actor_options or autoscaling_config."""
    settings = settings or Settings()
    if settings.redis_url is None:
        # An embedded Redis would be private to one ingress replica: sessions must live in a shared one.
        raise ValueError("set PARLEY_REDIS_URL: on Ray Serve the ingress replicas share sessions through one Redis")
    options = dict(options or {})
    if unknown := set(options) - {*MODELS, INGRESS}:
        raise ValueError(f"no deployment named {sorted(unknown)}; the deployments are {[*MODELS, INGRESS]}")
    models = {
        name: (DecoderDeployment if name == "decoder" else EncoderDeployment)
        .options(name=name, **options.get(name, {})).bind(name, settings)
        for name in MODELS
    }
    return ParleyIngress.options(name=INGRESS, **options.get(INGRESS, {})).bind(settings, **models)


def build(args: dict[str, str]) -> Application:
    """Application builder for `serve run deploy.ray.app:build` and serve.yaml; scaling comes from
    the config file's `deployments:` entries, models and Redis from PARLEY_* variables."""
    if args:
        raise ValueError(f"deploy.ray.app:build takes no arguments (got {sorted(args)}); use PARLEY_* variables")
    return build_app()
