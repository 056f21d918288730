FROM python:3.11-slim

# curl: health checks. The torch pin in pyproject resolves to the CPU wheel on
# the CPU index below; a GPU deployment swaps the index for a CUDA one.
RUN apt-get update && apt-get install -y --no-install-recommends make curl && rm -rf /var/lib/apt/lists/*
ENV PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
    HF_HUB_OFFLINE=1 \
    PARLEY_DATA_DIR=/data \
    PYTHONUNBUFFERED=1

WORKDIR /srv/parley
COPY pyproject.toml requirements.lock Makefile README.md ./
COPY app app
COPY models models
RUN make install PYTHON=python3 VENV=/opt/venv
ENV PATH=/opt/venv/bin:$PATH

# Convert the packaged decoder once at build time so containers start in seconds.
RUN python -c "from pathlib import Path; from models.registry import default_decoder; default_decoder(Path('/data/models'))"

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s CMD curl -fsS http://127.0.0.1:8000/readyz || exit 1
CMD ["parley", "serve", "--host", "0.0.0.0", "--port", "8000"]
