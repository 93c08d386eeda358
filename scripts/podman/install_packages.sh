#!/usr/bin/env bash
# Install the Debian packages the Compose stack test needs (podman with runc, Debian's
# docker-compose, the dnsname CNI plugin for service-name DNS, debootstrap for the base images),
# only those missing. Needs root; used by .ci/run and `make test-compose`.
set -euo pipefail
pkgs=(podman runc docker-compose golang-github-containernetworking-plugin-dnsname debootstrap
      uidmap slirp4netns fuse-overlayfs)
need=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "error: missing Debian packages: ${need[*]} (run as root: apt-get install -y ${need[*]})" >&2
  exit 1
fi
echo "compose: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
