#!/usr/bin/env bash
# make image-test: the image and the compose stack, built and run for real on this machine.
#
# Starts a Docker engine if none runs (and stops only one it started), builds the Python base
# locally when Docker Hub is out of reach (deploy/offline-base.sh), builds the image, and runs it
# with the shipped default model: /healthz, /readyz, /classify, the HEALTHCHECK, the non-root
# user, no shared library twice. Then docker-compose with 2 api replicas behind nginx (built from
# Debian's nginx): both replicas answer, one is killed and requests still succeed; everything is
# torn down. Every wait is bounded; every port is on 127.0.0.1. Run as root (the engine and
# debootstrap need it). Prints the build time, the image size and the start-up times.
#
# ALGOSPEAK_PYTHON_IMAGE: the base to build on (default: the local one offline-base.sh makes).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's client speaks to Debian's engine and builds with its built-in BuildKit (a newer
# client elsewhere on PATH may want a buildx plugin instead).
docker=/usr/bin/docker
[ -x "$docker" ] || docker="$(command -v docker)"
export DOCKER_BUILDKIT=1
python="${VENV_PYTHON:-.venv/bin/python}"  # the checkout's virtualenv (make serve's)
base="${ALGOSPEAK_PYTHON_IMAGE:-algospeak-python:3.11-bookworm}"
image=algospeak-moderation:image-test
nginx=algospeak-nginx:image-test
project=algospeakimagetest
single=algospeak-image-test
work="$(mktemp -d)"
engine_pid=""

say() { echo "image-test: $*"; }
fail() { echo "image-test: FAILED: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

compose() {
  ALGOSPEAK_IMAGE="$image" ALGOSPEAK_NGINX_IMAGE="$nginx" \
    ALGOSPEAK_LB_BIND=127.0.0.1 ALGOSPEAK_LB_PORT="$lb_port" \
    docker-compose -p "$project" -f docker-compose.yml -f "$work/compose.override.yml" "$@"
}

cleanup() {
  set +e
  "$docker" rm -f "$single" >/dev/null 2>&1
  [ -f "$work/compose.override.yml" ] && compose down -v --remove-orphans >/dev/null 2>&1
  if [ -n "$engine_pid" ]; then
    say "stopping the Docker engine it started"
    kill "$engine_pid" 2>/dev/null
    for _ in $(seq 30); do kill -0 "$engine_pid" 2>/dev/null || break; sleep 1; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# wait_for SECONDS DESCRIPTION COMMAND...: runs COMMAND every half second until it succeeds.
wait_for() {
  local limit="$1" what="$2" started
  shift 2
  started="$(now)"
  until "$@" >/dev/null 2>&1; do
    awk -v a="$started" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a > l) }' \
      && fail "$what: not within ${limit} s"
    sleep 0.5
  done
}

# ----- the engine
if ! "$docker" info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || fail "no Docker engine (apt-get install docker.io docker-compose)"
  say "starting a Docker engine (log: $work/dockerd.log)"
  # No iptables and no default bridge: what a sandbox or a CI container allows; builds use the
  # host's network and compose's own bridge networks still work.
  dockerd --iptables=false --bridge=none --storage-driver=overlay2 >"$work/dockerd.log" 2>&1 &
  engine_pid=$!
  wait_for 60 "the Docker engine to answer" "$docker" info
fi
command -v docker-compose >/dev/null || fail "docker-compose is missing (apt-get install docker-compose)"

# ----- the model: the shipped default, prepared as make serve prepares it
model="$("$python" -m artifacts.shipped 2>"$work/prepare.log")" || { cat "$work/prepare.log" >&2; fail "preparing the default model"; }
[ -f "$model" ] || fail "no prepared default model ($model)"

# ----- the base and the images
if ! "$docker" image inspect "$base" >/dev/null 2>&1; then
  say "building the local base image $base"
  bash deploy/offline-base.sh "$base"
fi
say "building $image on $base"
started="$(now)"
"$docker" build --network=host --build-arg PYTHON_IMAGE="$base" -t "$image" . >"$work/build.log" 2>&1 \
  || { tail -n 40 "$work/build.log" >&2; fail "docker build"; }
build_s="$(since "$started")"
"$docker" build --network=host --build-arg BASE_IMAGE="$base" -t "$nginx" -f deploy/nginx.Dockerfile deploy \
  >"$work/nginx-build.log" 2>&1 || { tail -n 40 "$work/nginx-build.log" >&2; fail "nginx image build"; }
size_mb="$("$docker" image inspect -f '{{.Size}}' "$image" | awk '{ printf "%.0f", $1 / 1e6 }')"
say "image built in ${build_s} s (with the layer cache this machine has), ${size_mb} MB"

# Shared libraries: one copy of each (a library installed twice, say by a wheel and by the
# system, is wasted space and a chance of loading two versions).
"$docker" run --rm -i --entrypoint python "$image" - <<'EOF' || fail "a shared library is in the image twice"
import hashlib, os, sys
seen = {}
for top in ("/usr", "/opt", "/app"):  # /lib, /bin and /sbin link into /usr
    for folder, _, files in os.walk(top):
        for name in files:
            path = os.path.join(folder, name)
            if ".so" in name and not os.path.islink(path):
                digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
                seen.setdefault(digest, []).append(path)
twice = [paths for paths in seen.values() if len(paths) > 1]
total = sum(os.path.getsize(paths[0]) for paths in seen.values()) / 1e6
print(f"image-test: {len(seen)} shared libraries, {total:.0f} MB, {len(twice)} duplicated")
for paths in twice:
    print("  same file:", *paths)
sys.exit(1 if twice else 0)
EOF

# ----- one container
port="$(free_port)"
say "running $image on 127.0.0.1:$port"
"$docker" network create "$single" >/dev/null
started="$(now)"
"$docker" run -d --name "$single" --network "$single" -p "127.0.0.1:$port:8000" \
  -v "$model:/app/models/default/algospeak.gguf:ro" "$image" >/dev/null
wait_for 60 "/healthz" curl -fsS "http://127.0.0.1:$port/healthz"
healthz_s="$(since "$started")"
wait_for 120 "/readyz" curl -fsS "http://127.0.0.1:$port/readyz"
readyz_s="$(since "$started")"
say "container start to /healthz ${healthz_s} s, to /readyz ${readyz_s} s"
answer="$(curl -fsS -H 'content-type: application/json' -d '{"text": "i will unalive you tonight"}' \
  "http://127.0.0.1:$port/classify")"
echo "$answer" | "$python" -c 'import json, sys; a = json.load(sys.stdin); assert a["label"] in ("harmful", "safe") and "action" in a, a' \
  || fail "/classify answered $answer"
user="$("$docker" exec "$single" id -u)"
[ "$user" = 10001 ] || fail "the service runs as uid $user, not the non-root 10001"
healthy() { [ "$("$docker" inspect -f '{{.State.Health.Status}}' "$single")" = healthy ]; }
wait_for 90 "the HEALTHCHECK to report healthy" healthy
say "/classify, non-root user and HEALTHCHECK: ok"
"$docker" rm -f "$single" >/dev/null
"$docker" network rm "$single" >/dev/null

# ----- compose: 2 api replicas behind nginx
lb_port="$(free_port)"
cat >"$work/compose.override.yml" <<EOF
services:
  api:
    volumes:
      - $model:/app/models/default/algospeak.gguf:ro
EOF
say "docker-compose up: 2 api replicas behind nginx on 127.0.0.1:$lb_port"
# The api image is the one built above; compose builds nothing.
compose up -d --no-build --scale api=2 >"$work/compose.log" 2>&1 || { cat "$work/compose.log" >&2; fail "docker-compose up"; }
classify() {
  curl -fsS -m 30 -H 'content-type: application/json' -d '{"text": "grilled corn with lime"}' \
    "http://127.0.0.1:$lb_port/classify"
}
ready() { curl -fsS -m 5 "http://127.0.0.1:$lb_port/readyz"; }
wait_for 180 "the stack's /readyz" ready
replicas=($(compose ps -q api))
[ "${#replicas[@]}" = 2 ] || fail "expected 2 api replicas, found ${#replicas[@]}"
for replica in "${replicas[@]}"; do
  wait_for 120 "replica ${replica:0:12} to be ready" \
    "$docker" exec "$replica" python /app/deploy/healthcheck.py /readyz
done
for _ in $(seq 20); do classify >/dev/null || fail "a request through nginx failed"; done
for replica in "${replicas[@]}"; do
  served="$("$docker" logs "$replica" 2>&1 | grep -c '/classify' || true)"
  [ "$served" -gt 0 ] || fail "replica $replica answered none of 20 requests"
  say "replica ${replica:0:12} answered $served"
done
"$docker" kill "${replicas[0]}" >/dev/null
say "killed replica ${replicas[0]:0:12}"
for _ in $(seq 20); do classify >/dev/null || fail "a request failed after one replica was killed"; done
say "20 requests after the kill: all answered"
say "passed: build ${build_s} s, image ${size_mb} MB, /healthz ${healthz_s} s, /readyz ${readyz_s} s"
