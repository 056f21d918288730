"""Prometheus metrics, one registry per app so that several apps in one process do not collide."""

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32)
INFERENCE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.turn_seconds = Histogram(
            "parley_turn_seconds", "Turn latency by the modalities it carried", ["modalities"],
            buckets=LATENCY_BUCKETS_S, registry=self.registry,
        )
        self.turns = Counter("parley_turns", "Turns by outcome", ["outcome"], registry=self.registry)
        self.inference_seconds = Histogram(
            "parley_model_inference_seconds", "Time of one batch (a decoder step or prefill) per model", ["model"],
            buckets=INFERENCE_BUCKETS_S, registry=self.registry,
        )
        self.batch_size = Histogram("parley_model_batch_size", "Items per batch per model", ["model"],
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("parley_queue_depth", "Requests waiting for a model", ["model"],
                                 registry=self.registry)

    def observe_inference(self, model: str, seconds: float, batch_size: int) -> None:
        self.inference_seconds.labels(model).observe(seconds)
        self.batch_size.labels(model).observe(batch_size)

    def set_queue_depth(self, model: str, depth: int) -> None:
        self.queue_depth.labels(model).set(depth)

    def observe_turn(self, modalities: list[str], seconds: float) -> None:
        self.turn_seconds.labels("+".join(sorted(modalities)) or "none").observe(seconds)
        self.turns.labels("ok").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
