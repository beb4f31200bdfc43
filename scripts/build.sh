#!/usr/bin/env bash
# The build step shared by scripts/run.sh and both Docker images (docker/Dockerfile,
# docker/Dockerfile.cuda): installs the missing Debian packages of the build (not the
# test tools), configures a Release build without the tests, and builds kvtierd and
# kvtierctl.
#   scripts/build.sh [BUILD_DIR]   default build/release
# The binaries land in BUILD_DIR/server/kvtierd and BUILD_DIR/tools/kvtierctl.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:-build/release}
scripts/install-deps.sh --build
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVTIER_BUILD_TESTS=OFF
cmake --build "$build" -j "$(nproc)" --target kvtierd kvtierctl
