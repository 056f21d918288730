"""Observability: logs (logs.py) with redaction (redaction.py), Prometheus metrics (metrics.py), traces
(tracing.py). The HTTP middleware that feeds them per request is in app/api/middleware/."""
