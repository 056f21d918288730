"""ASGI middleware around every request: body size cap, request id with access log and metrics, tracing,
the answering worker's header."""
