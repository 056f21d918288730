"""Prometheus metrics, one registry per app so that several apps in one process do not collide."""

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.turn_seconds = Histogram(
            "parley_turn_seconds", "Turn latency by the modalities it carried", ["modalities"],
            buckets=LATENCY_BUCKETS_S, registry=self.registry,
        )
        self.turns = Counter("parley_turns", "Turns by outcome", ["outcome"], registry=self.registry)

    def observe_turn(self, modalities: list[str], seconds: float) -> None:
        self.turn_seconds.labels("+".join(sorted(modalities)) or "none").observe(seconds)
        self.turns.labels("ok").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
