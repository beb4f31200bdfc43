#!/usr/bin/env bash
# Fails when a C++ file of ours is not clang-format clean (.clang-format: Google, 100 cols).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cc' '*.h' '*.cu' '*.cuh')
if [ ${#files[@]} -eq 0 ]; then exit 0; fi
clang-format --dry-run -Werror "${files[@]}"
echo "check-format: ${#files[@]} files clean"
