# Shared by the bench/ scripts (sourced, not run): the Release build and a private kvtierd.
# Callers set `build` and `work` before using these.

# Configures and builds the Release targets given as arguments into $build. Its output
# goes to stderr, so that stdout holds the results only.
build_release() {
  scripts/install-deps.sh >&2
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVTIER_BUILD_TESTS=OFF >/dev/null
  cmake --build "$build" --target "$@" >&2
}

# ensure_command CMD PACKAGE: installs Debian's PACKAGE when CMD is not on the PATH
# (benchmark-only tools stay out of scripts/install-deps.sh).
ensure_command() {
  command -v "$1" >/dev/null && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "$2" >&2
}

# start_daemon NAME [kvtierd flags...]: starts kvtierd on $work/NAME.sock with data in
# $work/NAME (no TCP, no metrics) and waits until its ready file appears. Sets $daemon.
start_daemon() {
  local name=$1
  shift
  rm -f "$work/$name.ready.json"
  "$build/server/kvtierd" --unix_socket="$work/$name.sock" --listen= --metrics_listen= \
    --data_dir="$work/$name" --ready_file="$work/$name.ready.json" "$@" \
    >"$work/$name.log" 2>&1 &
  daemon=$!
  for _ in $(seq 1 300); do
    [ -f "$work/$name.ready.json" ] && return 0
    kill -0 "$daemon" 2>/dev/null || { cat "$work/$name.log" >&2; return 1; }
    sleep 0.1
  done
  echo "kvtierd not ready after 30 s" >&2
  return 1
}

# Stops the daemon started last (SIGTERM: it drains and exits 0).
stop_daemon() {
  if [ -n "${daemon:-}" ]; then
    kill -TERM "$daemon" 2>/dev/null || true
    wait "$daemon" 2>/dev/null || true
    daemon=
  fi
}

# One line naming the machine, for the top of a results table.
machine_line() {
  echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
}
