# Open-AutoGLM: one image for the API and the Celery workers (torch from the package index, with CUDA).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    AUTOGLM_DATA_DIR=/data \
    AUTOGLM_HOST=0.0.0.0

RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /srv/autoglm
COPY pyproject.toml README.md ./
COPY app ./app
COPY ingest ./ingest
COPY retrieval ./retrieval
COPY inference ./inference
COPY kernels ./kernels
COPY web ./web
RUN pip install . \
    && useradd --create-home --uid 1000 autoglm \
    && mkdir -p /data && chown autoglm /data

USER autoglm
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
    CMD curl -fsS http://127.0.0.1:8000/api/health || exit 1
CMD ["autoglm", "serve"]
