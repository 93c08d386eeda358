#!/usr/bin/env bash
# Build the local base images the Compose stack is built on, from Debian packages only:
#   localhost/movierec-base/debian:bookworm   debootstrap --variant=minbase, podman import
#   localhost/movierec-base/python:bookworm   + python3 python3-venv python-is-python3
#   localhost/movierec-base/nginx:bookworm    + nginx gettext-base wget
# An image that already exists is reused (podman image exists), so only the first run pays.
# Needs root, podman and debootstrap; CONTAINERS_CONF should name scripts/podman/containers.conf.
#
#   scripts/podman/base_images.sh [WORK_DIR]     (default var/compose)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${1:-$here/../../var/compose}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=bookworm
debian=localhost/movierec-base/debian:$suite
python=localhost/movierec-base/python:$suite
nginx=localhost/movierec-base/nginx:$suite
mkdir -p "$work"

if ! podman image exists "$debian"; then
  rootfs="$work/rootfs-$suite"
  if [ ! -e "$rootfs/.complete" ]; then
    rm -rf "$rootfs"
    echo "base-images: debootstrap --variant=minbase $suite (a few minutes)"
    debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
      || { tail -20 "$work/debootstrap.log"; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    touch "$rootfs/.complete"
  fi
  echo "base-images: podman import -> $debian"
  tar -C "$rootfs" --exclude=./.complete -c . | podman import --change 'CMD ["bash"]' - "$debian" >/dev/null 2>&1
  rm -rf "$rootfs"
fi

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-bundle.crt"
for pair in "python:$python" "nginx:$nginx"; do
  name="${pair%%:*}"; image="${pair#*:}"
  if ! podman image exists "$image"; then
    echo "base-images: building $image"
    podman build -q --build-arg "DEBIAN_IMAGE=$debian" -f "$here/$name.Containerfile" \
      -t "$image" "$ctx" >/dev/null
  fi
done
echo "base-images: ready ($debian, $python, $nginx)"
