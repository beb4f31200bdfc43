#!/bin/sh
# Entry point of the kvtier images: runs kvtierd with the container's arguments under a
# umask that leaves the files it creates, the Unix socket above all, usable by its group,
# so that engine containers sharing that group (Kubernetes fsGroup or supplementalGroups
# 10001) can connect without running as the same user. KVTIER_UMASK overrides it.
umask "${KVTIER_UMASK:-0007}"
exec /usr/local/bin/kvtierd "$@"
