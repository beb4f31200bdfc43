"""kvtier: Python SDK for the kvtier KV-cache tier server.

``kvtier.Client`` (synchronous) and ``kvtier.AsyncClient`` (asyncio) cover every RPC of
kvtier.v1.KvTier plus grpc.health.v1; arrays go in and out as numpy arrays. See README.md.

The client modules (numpy, grpc) are imported on first use, so that ``import
kvtier.testing`` (standard library only) works even where those do not import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Public name -> module that defines it.
_EXPORTS = {
    # errors
    "KvtierError": "kvtier.errors",
    "Cancelled": "kvtier.errors",
    "Unknown": "kvtier.errors",
    "InvalidArgument": "kvtier.errors",
    "DeadlineExceeded": "kvtier.errors",
    "NotFound": "kvtier.errors",
    "AlreadyExists": "kvtier.errors",
    "PermissionDenied": "kvtier.errors",
    "ResourceExhausted": "kvtier.errors",
    "FailedPrecondition": "kvtier.errors",
    "Aborted": "kvtier.errors",
    "OutOfRange": "kvtier.errors",
    "Unimplemented": "kvtier.errors",
    "Internal": "kvtier.errors",
    "Unavailable": "kvtier.errors",
    "DataLoss": "kvtier.errors",
    "Unauthenticated": "kvtier.errors",
    "ProtocolError": "kvtier.errors",
    # types
    "Geometry": "kvtier.datatypes",
    "SessionInfo": "kvtier.datatypes",
    "OffloadResult": "kvtier.datatypes",
    "RepairResult": "kvtier.datatypes",
    "PromoteResult": "kvtier.datatypes",
    "ReleaseResult": "kvtier.datatypes",
    "PauseResult": "kvtier.datatypes",
    "StageTimings": "kvtier.datatypes",
    "TierStats": "kvtier.datatypes",
    "Stats": "kvtier.datatypes",
    "RetryPolicy": "kvtier.datatypes",
    "ReturnMode": "kvtier.datatypes",
    "Selector": "kvtier.datatypes",
    "ScoringMode": "kvtier.datatypes",
    "BFLOAT16": "kvtier.arrays",
    # clients
    "Client": "kvtier.client",
    "AsyncClient": "kvtier.aio",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kvtier' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from kvtier.aio import AsyncClient  # noqa: F401
    from kvtier.arrays import BFLOAT16  # noqa: F401
    from kvtier.client import Client  # noqa: F401
    from kvtier.errors import *  # noqa: F401,F403
    from kvtier.datatypes import *  # noqa: F401,F403
