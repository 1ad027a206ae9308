#!/usr/bin/env bash
# Builds the Python base image locally, for machines that cannot pull from Docker Hub
# (air-gapped platforms, closed CI): Debian bookworm (minbase) with Python 3.11, venv and pip,
# made by debootstrap from a Debian mirror and imported with `docker import`. Run as root.
#
#   deploy/offline-base.sh [TAG]                 # default tag: algospeak-python:3.11-bookworm
#   docker build --network=host --build-arg PYTHON_IMAGE=algospeak-python:3.11-bookworm .
#
# DEBIAN_MIRROR overrides the mirror (default: the first one this machine's apt uses). The
# certificate authorities this machine adds to Debian's (/usr/local/share/ca-certificates, e.g.
# a TLS-intercepting proxy's) are trusted in the image too, so pip and apt inside a build reach
# the same package registries as this machine does. An existing image with TAG is kept.
set -euo pipefail

tag="${1:-algospeak-python:3.11-bookworm}"
suite=bookworm

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "offline-base: $tag exists; keeping it (docker rmi $tag to rebuild)"
  exit 0
fi
for tool in debootstrap docker; do
  command -v "$tool" >/dev/null || { echo "offline-base: $tool is missing (apt-get install debootstrap docker.io)" >&2; exit 1; }
done
if [ "$(id -u)" -ne 0 ]; then
  echo "offline-base: debootstrap needs root" >&2
  exit 1
fi

mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  # deb822 sources (URIs:) or one-line ones (deb URI suite ...), whichever this machine has.
  mirror="$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)"
  [ -n "$mirror" ] || mirror="$(grep -hsE '^deb ' /etc/apt/sources.list | awk '{print $2}' | head -n1 || true)"
  mirror="${mirror:-http://deb.debian.org/debian}"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
echo "offline-base: debootstrap $suite from $mirror"
debootstrap --variant=minbase \
  --include=python3,python3-venv,python-is-python3,ca-certificates \
  "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

# The same Debian suites a python:*-bookworm image has: updates and security fixes.
cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror%/debian}/debian-security $suite-security main
EOF
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
fi
chroot "$root" update-ca-certificates >/dev/null 2>&1
# As Debian's own container images do: no apt package caches or translations left in layers.
printf 'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\nAcquire::Languages "none";\n' \
  >"$root/etc/apt/apt.conf.d/90container"
# pip's own certificate bundle knows none of the added authorities: use the system's.
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$root/etc/pip.conf"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb "$root"/tmp/*

tar --numeric-owner -C "$root" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  - "$tag" >/dev/null
echo "offline-base: built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1 / 1e6}'))"
