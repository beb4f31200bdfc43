"""Typed exceptions: one class per gRPC status code, all under :class:`KvtierError`.

Every failure a call reports is a :class:`KvtierError` with ``code`` (a
``grpc.StatusCode``) and ``details`` (the server's message, which starts with the offending
field, e.g. ``"keys: expected 32768 bytes ..., got 100"``). Problems the SDK detects before
sending anything (a wrong shape or dtype) are :class:`InvalidArgument` too, which is also a
``ValueError``; a response stream that breaks the protocol is :class:`ProtocolError` (an
:class:`Internal`).
"""

from __future__ import annotations

from typing import Dict, Optional, Type

import grpc

__all__ = [
    "KvtierError", "Cancelled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
    "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
    "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
    "ProtocolError", "from_rpc_error", "error_for_code",
]


class KvtierError(Exception):
    """Base of every error of the SDK. ``code``: grpc.StatusCode; ``details``: the message."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, details: str = "", code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(details)
        if code is not None:
            self.code = code
        self.details = details

    def __str__(self) -> str:
        return f"{self.code.name}: {self.details}"


class Cancelled(KvtierError):
    code = grpc.StatusCode.CANCELLED


class Unknown(KvtierError):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(KvtierError, ValueError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(KvtierError, TimeoutError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(KvtierError, LookupError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(KvtierError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(KvtierError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(KvtierError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(KvtierError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(KvtierError):
    code = grpc.StatusCode.ABORTED


class OutOfRange(KvtierError, ValueError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(KvtierError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(KvtierError):
    code = grpc.StatusCode.INTERNAL


class ProtocolError(Internal):
    """The server's response broke the protocol (summary not first, chunks that do not
    match the summary or the geometry, no ``done``) or carries a value this SDK cannot read
    (a geometry whose DType it does not know)."""


class Unavailable(KvtierError, ConnectionError):
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(KvtierError):
    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(KvtierError):
    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: Dict[grpc.StatusCode, Type[KvtierError]] = {
    cls.code: cls
    for cls in (Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists,
                PermissionDenied, ResourceExhausted, FailedPrecondition, Aborted, OutOfRange,
                Unimplemented, Internal, Unavailable, DataLoss, Unauthenticated)
}


def error_for_code(code: grpc.StatusCode, details: str) -> KvtierError:
    """The typed exception for ``code`` (``KvtierError`` itself for OK, which is no error)."""
    return _BY_CODE.get(code, KvtierError)(details, code=code)


def from_rpc_error(error: grpc.RpcError) -> KvtierError:
    """Maps a grpc.RpcError (sync or aio) to its typed exception."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    if code is None:
        code = grpc.StatusCode.UNKNOWN
    return error_for_code(code, details or "")
