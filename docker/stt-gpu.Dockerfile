# STT worker on NVIDIA GPUs: CUDA 12 + cuDNN 9 runtime for CTranslate2 (faster-whisper).
#   docker build -f docker/stt-gpu.Dockerfile -t babelstream/stt-gpu .
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    STATE_DIR=/var/lib/babelstream XDG_CACHE_HOME=/var/cache/babelstream \
    WORKER_WEB_HOST=0.0.0.0 WORKER_WEB_PORT=6066
# the GPU settings, as compose.gpu.yaml and deploy/k8s/overlays/gpu set them (README, Benchmarks: finals
# without timestamps batch on a GPU; the full 30 s window costs nothing there)
ENV DEVICE=cuda COMPUTE_TYPE=float16 FINAL_TIMESTAMPS=false MAX_BATCH_SIZE=16 ENCODER_PAD_MS=-1 BUSY_ENCODER_PAD_MS=-1
RUN apt-get update && apt-get install -y --no-install-recommends software-properties-common \
 && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
 && rm -rf /var/lib/apt/lists/* && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN useradd --system --create-home --uid 10001 babel \
 && mkdir -p /var/lib/babelstream /var/cache/babelstream && chown babel /var/lib/babelstream /var/cache/babelstream
WORKDIR /app
COPY pyproject.toml README.md ./
COPY babelstream ./babelstream
COPY core ./core
COPY streams ./streams
COPY agents ./agents
COPY gateway ./gateway
COPY schemas ./schemas
RUN pip install .
USER babel
RUN python -c "from core.engines.models import packaged_base_model; print(packaged_base_model())"
EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=3s --retries=12 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6066/healthz', timeout=2)"
CMD ["babelstream", "worker", "stt"]
