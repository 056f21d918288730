"""Observability: tracing (tracing.py). Logs, redaction and metrics still live in app/logs.py, app/redaction.py
and app/metrics.py."""
