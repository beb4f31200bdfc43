#!/usr/bin/env bash
# The test command: installs what is missing, builds every target with AddressSanitizer
# and UBSan, checks formatting, and runs every test. Exits non-zero on any failure.
#   scripts/test.sh            build in build/test and run all tests
#   scripts/test.sh -R regex   run only the ctest tests matching regex
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/python-env.sh build/venv

build=build/test
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVTIER_SANITIZE=ON
cmake --build "$build" -j "$(nproc)"

scripts/check-format.sh

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" "$@"
