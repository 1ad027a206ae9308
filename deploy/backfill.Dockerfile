# The serving image plus Ray, for backfills on a Ray cluster (deploy/kuberay-backfill.yaml):
# every pod of that cluster runs it, so the driver and the actors have the service's code, the
# prepared default model and one Ray version. The serving image itself never gets Ray.
#
#   docker build --build-arg MODEL=default -t algospeak-moderation:with-model .
#   docker build -f deploy/backfill.Dockerfile -t algospeak-backfill .
#
# ray[default] brings what KubeRay talks to (the dashboard, its agent and the job server), ray[data]
# what the backfill runs on; wget is what KubeRay's probes call. RAY_VERSION must be the
# manifest's rayVersion, inside the range pyproject.toml's ray extra allows.
ARG IMAGE=algospeak-moderation:with-model
FROM ${IMAGE}
ARG RAY_VERSION=2.60.0
USER root
# The image's virtualenv has no pip (serving never needs it): the interpreter it was made from
# installs into it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/* \
    && "$(readlink -f /opt/venv/bin/python)" -m pip --python /opt/venv/bin/python install \
        --no-cache-dir "ray[default,data]==${RAY_VERSION}"
USER 10001:10001
