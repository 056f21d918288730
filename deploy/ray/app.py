"""Parley on Ray Serve: the text, speech and vision encoders and the decoder run as deployments of
their own, each scaled on its own, behind Parley's unchanged HTTP API.

    ingress  Parley's FastAPI app (sessions in Redis, dialogue tracking, policy)
      -> text     TextEncoder.predict_batch
      -> speech   SpeechEncoder.predict_batch
      -> vision   VisionEncoder.predict_batch
      -> decoder  Decoder.stream, piece by piece

The ingress builds the usual pipeline with proxies in place of local models (Runtime.overrides):
a proxy has the model's small interface and forwards each call to its deployment through a
handle. Settings are read from the PARLEY_* environment of the process that builds the
application and travel with it to every replica, so all replicas load the same models.

    serve run deploy/ray/serve.yaml        # replicas and CPUs per deployment in that file
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any

import torch
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from app.config import Settings
from app.main import create_app
from app.runtime import ModelLoader, model_loaders
from models.decoder import Messages
from models.registry import resolve_placement

MODELS = ("text", "speech", "vision", "decoder")  # deployment names, as serve.status() shows them
INGRESS = "ingress"
# A scheduling share, not a thread count: small enough that every deployment fits on a 2-core box.
# On a cluster give each deployment real CPUs (or GPUs) in serve.yaml.
DEFAULT_CPUS = 0.25


class _ModelReplica:
    """One model, loaded the way the single-process server loads it (app.runtime.model_loaders)."""

    def __init__(self, name: str, settings: Settings) -> None:
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        _, load = model_loaders(settings, resolve_placement(settings.device))[name]
        self.model = load()
        self.calls = 0

    def info(self) -> dict[str, Any]:
        """Which process holds the model and how many calls it has served (for operators and tests)."""
        return {"pid": os.getpid(), "model": type(self.model).__name__, "calls": self.calls}


@serve.deployment(ray_actor_options={"num_cpus": DEFAULT_CPUS})
class EncoderDeployment(_ModelReplica):
    def predict_batch(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.model.predict_batch(*args, **kwargs)


@serve.deployment(ray_actor_options={"num_cpus": DEFAULT_CPUS})
class DecoderDeployment(_ModelReplica):
    def stream(self, messages: Messages, *, max_new_tokens: int) -> Iterator[str]:
        self.calls += 1
        yield from self.model.stream(messages, max_new_tokens=max_new_tokens)


class EncoderProxy:
    """An encoder's `predict_batch`, run by its deployment. The pipeline calls encoders from worker
    threads (asyncio.to_thread), so blocking on the result here holds no event loop."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle

    def predict_batch(self, *args: Any, **kwargs: Any) -> Any:
        return self.handle.predict_batch.remote(*args, **kwargs).result()


class DecoderProxy:
    """The decoder's `stream`, run by its deployment; pieces arrive as the replica yields them."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle
        self.streaming = handle.options(stream=True)

    def stream(self, messages: Messages, *, max_new_tokens: int) -> Iterator[str]:
        yield from self.streaming.stream.remote(messages, max_new_tokens=max_new_tokens)


def _connected(proxy: EncoderProxy | DecoderProxy) -> EncoderProxy | DecoderProxy:
    """The proxy, once its deployment has a replica with the model loaded: /readyz stays 503 until
    every model can answer, as on a single server."""
    proxy.handle.info.remote().result()
    return proxy


@serve.deployment(ray_actor_options={"num_cpus": DEFAULT_CPUS})
@serve.ingress()
class ParleyIngress:
    """Parley's own app, its lifespan included; only the models are elsewhere."""

    def __init__(self, settings: Settings, **handles: DeploymentHandle) -> None:
        self.settings = settings
        self.proxies = {name: DecoderProxy(h) if name == "decoder" else EncoderProxy(h) for name, h in handles.items()}

    def __serve_build_asgi_app__(self):  # noqa: ANN204 - an ASGI app
        overrides: dict[str, ModelLoader] = {
            name: (f"ray deployment '{name}'", partial(_connected, proxy)) for name, proxy in self.proxies.items()
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
