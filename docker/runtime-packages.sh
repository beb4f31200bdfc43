#!/bin/sh
# Prints, one per line, the Debian packages that hold the shared libraries the given
# binaries load, so that the runtime stage of docker/Dockerfile and docker/Dockerfile.cuda
# installs exactly what the build stage linked against (no hand-kept list to drift).
#   docker/runtime-packages.sh BINARY...
# Fails when a library is missing or belongs to no package, except the CUDA runtime under
# /usr/local/cuda, which the CUDA image copies from NVIDIA's runtime image instead.
set -eu

libs=$(for bin in "$@"; do
  if ldd "$bin" | grep -q "not found"; then
    echo "runtime-packages: $bin: a library is not found" >&2
    ldd "$bin" >&2
    exit 1
  fi
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'
done | sort -u)

for lib in $libs; do
  real=$(readlink -f "$lib")
  case "$real" in /usr/local/cuda*) continue ;; esac
  found=""
  # Debian 12 merges /lib into /usr/lib: dpkg knows a file under one of the two names.
  for path in "$lib" "$real" "${lib#/usr}" "${real#/usr}" "/usr$lib" "/usr$real"; do
    if owner=$(dpkg-query -S "$path" 2>/dev/null); then
      found=${owner%%:*}
      break
    fi
  done
  if [ -z "$found" ]; then
    echo "runtime-packages: $lib belongs to no Debian package" >&2
    exit 1
  fi
  echo "$found"
done | sort -u
