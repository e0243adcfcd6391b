# newsroom-qa: slim image with the models inside, the seed index baked at build time, running as non-root.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
    NEWSROOM_QA_DATA_DIR=/data NEWSROOM_QA_HOST=0.0.0.0 NEWSROOM_QA_PORT=8000

RUN useradd --create-home --uid 10001 newsroom && mkdir /data /app && chown newsroom /data /app
WORKDIR /app

# The same install steps as the README: torch pinned (CPU build) first, then the project in place.
ARG TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
RUN pip install torch==2.13.0 ${TORCH_PIP_ARGS}
COPY --chown=newsroom pyproject.toml README.md ./
COPY --chown=newsroom index ./index
COPY --chown=newsroom service ./service
COPY --chown=newsroom prompts ./prompts
COPY --chown=newsroom seeds ./seeds
# The postgres backend and Dask ingestion are in by default, so one image serves every deployment.
ARG EXTRAS="postgres,dask"
RUN pip install -e ".[${EXTRAS}]"

USER newsroom
# Bake the seed index into the image so the container answers at once (faiss backend; with postgres the first
# replica to start seeds an empty database).
RUN newsroom-qa index init

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status != 200)"
CMD ["newsroom-qa", "serve"]
