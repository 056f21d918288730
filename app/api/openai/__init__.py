"""The OpenAI-compatible API: wire models (protocol.py), serving on top of the pipeline (serving.py), request
bodies to turns (body.py), routes (routes.py, transcriptions.py)."""
