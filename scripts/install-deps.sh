#!/usr/bin/env bash
# Installs the Debian packages kvtier builds and tests with, when any is missing.
# Safe to run repeatedly: it calls apt-get only if something is not installed yet.
#   scripts/install-deps.sh           what the build and the test suite need
#   scripts/install-deps.sh --build   only what the build needs (scripts/build.sh: run.sh and
#                                     the Docker images)
set -euo pipefail

packages=(
  cmake ninja-build g++ ccache pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  libabsl-dev prometheus-cpp-dev libcivetweb-dev zlib1g-dev libspdlog-dev librocksdb-dev
  libgtest-dev libgmock-dev libbenchmark-dev libhiredis-dev
)
if [ "${1:-}" != "--build" ]; then
  packages+=(
    clang-format
    python3-numpy python3-venv python3-pip
    prometheus chromium
    docker-compose
  )
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
