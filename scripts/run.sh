#!/usr/bin/env bash
# The run command: installs what is missing, builds Release, starts kvtierd with its
# defaults (Unix socket kvtier-data/kvtierd.sock, 127.0.0.1:50551, metrics on
# 127.0.0.1:9551/metrics, data in ./kvtier-data), runs the agent-pause demo against it,
# then keeps serving until Ctrl-C. Extra arguments go to kvtierd.
set -euo pipefail
cd "$(dirname "$0")/.."

# The same build step as the Docker images (docker/Dockerfile, docker/Dockerfile.cuda).
build=build/release
scripts/build.sh "$build"

mkdir -p kvtier-data
ready=kvtier-data/ready.json
rm -f "$ready"
"$build/server/kvtierd" --ready_file="$ready" "$@" &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon' INT TERM

# Poll for readiness: the daemon writes the ready file once every listener is up.
for _ in $(seq 1 300); do
  if [ -f "$ready" ]; then break; fi
  if ! kill -0 "$daemon" 2>/dev/null; then
    echo "run: kvtierd exited before it was ready" >&2
    exit 1
  fi
  sleep 0.1
done
if [ ! -f "$ready" ]; then
  echo "run: kvtierd not ready after 30 s" >&2
  kill -TERM "$daemon"
  exit 1
fi
"$build/tools/kvtierctl" health --server unix://kvtier-data/kvtierd.sock
"$build/tools/kvtierctl" demo --server unix://kvtier-data/kvtierd.sock

echo
echo "kvtierd is serving (unix://kvtier-data/kvtierd.sock, 127.0.0.1:50551," \
     "metrics http://127.0.0.1:9551/metrics). Ctrl-C stops it."
wait "$daemon"
