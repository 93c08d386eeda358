#!/usr/bin/env bash
# `make test`'s first step: the system programs the tests need, installed when this machine
# allows it, otherwise one message naming the exact command, within seconds.
#
# REQUIRED lists "command:Debian package" pairs; extend it (or set MOVIEREC_EXTRA_SYSTEM_PACKAGES
# to more such pairs) when a test needs another program. A command is looked for on PATH and in
# /usr/sbin (Debian's nginx lives there, outside a normal user's PATH). `npm` is checked as a
# command: Debian's nodejs may already ship it, and the separate npm package would conflict.
#
# Installs with apt-get when running as root or with passwordless sudo (`apt-get update` once,
# first). MOVIEREC_NO_INSTALL=1 never installs (only reports); MOVIEREC_ASSUME_MISSING="nginx ..."
# treats those commands as missing (how tests simulate a bare machine).
set -euo pipefail

REQUIRED=(
  "java:openjdk-17-jre-headless"    # Spark (tests/spark, make run)
  "nginx:nginx"                     # web front (browser, hardening and make-run tests)
  "chromium:chromium"               # headless browser tests (Playwright drives it)
  "npm:npm"                         # tailwindcss CLI for make css-check
)
# shellcheck disable=SC2206
REQUIRED+=(${MOVIEREC_EXTRA_SYSTEM_PACKAGES:-})

assumed_missing=" ${MOVIEREC_ASSUME_MISSING:-} "

have() {
  local cmd=$1
  [[ $assumed_missing == *" $cmd "* ]] && return 1
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ]
}

missing=()
for pair in "${REQUIRED[@]}"; do
  cmd=${pair%%:*}
  pkg=${pair#*:}
  have "$cmd" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

command_line="sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}"
runner=()
if [ "${MOVIEREC_NO_INSTALL:-0}" != "1" ] && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    runner=(env)
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    runner=(sudo -n env)
  fi
fi

if [ ${#runner[@]} -eq 0 ]; then
  echo "error: make test needs these system packages: ${missing[*]}. Install them, then re-run make test:" >&2
  echo "    $command_line" >&2
  exit 1
fi

echo "make test: installing ${missing[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
# Bounded: an unreachable mirror ends in the error below, not in a wait without end.
if ! { "${runner[@]}" DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -qq -o Acquire::Retries=1 &&
       "${runner[@]}" DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
  echo "error: installing ${missing[*]} failed (see above). Run it yourself, then re-run make test:" >&2
  echo "    $command_line" >&2
  exit 1
fi
still=()
for pair in "${REQUIRED[@]}"; do
  cmd=${pair%%:*}
  [[ $assumed_missing == *" $cmd "* ]] && continue
  have "$cmd" || still+=("$cmd")
done
if [ ${#still[@]} -gt 0 ]; then
  echo "error: still missing after the install: ${still[*]}" >&2
  exit 1
fi
