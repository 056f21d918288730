"""Prometheus metrics, one registry per app so that several apps in one process do not collide.

parley_http_requests_total{method,route,status}       requests, by route template (not the raw path)
parley_http_request_seconds{method,route,status}      request latency (a streamed reply: until its last byte)
parley_turn_seconds{modalities}                       turn latency by what the turn carried, e.g. "image+text"
parley_turns_total{outcome}                           turns run
parley_model_inference_seconds{model}                 one batch through a model (a decoder step or prefill)
parley_model_batch_size{model}                        items in that batch
parley_queue_depth{model}                             requests waiting for a model's batcher
parley_redis_errors_total                             requests answered 503 because Redis was unreachable
"""

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32)
REQUEST_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32)  # health checks to long turns
INFERENCE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("parley_http_requests", "HTTP requests by route template and status",
                                ["method", "route", "status"], registry=self.registry)
        self.request_seconds = Histogram(
            "parley_http_request_seconds", "HTTP request latency by route template and status",
            ["method", "route", "status"], buckets=REQUEST_BUCKETS_S, registry=self.registry,
        )
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
        self.redis_errors = Counter("parley_redis_errors", "Requests that found Redis unreachable",
                                    registry=self.registry)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(method, route, str(status)).observe(seconds)

    def observe_inference(self, model: str, seconds: float, batch_size: int) -> None:
        """One batch through `model` (e.g. "decoder", "speech"): called by the batchers after each model call."""
        self.inference_seconds.labels(model).observe(seconds)
        self.batch_size.labels(model).observe(batch_size)

    def set_queue_depth(self, model: str, depth: int) -> None:
        self.queue_depth.labels(model).set(depth)

    def observe_turn(self, modalities: list[str], seconds: float) -> None:
        self.turn_seconds.labels("+".join(sorted(modalities)) or "none").observe(seconds)
        self.turns.labels("ok").inc()

    def redis_error(self) -> None:
        self.redis_errors.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
