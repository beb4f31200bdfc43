"""grpc.health.v1 Check without generated stubs: the two messages are one field each, so
they are encoded by hand. (Generating health.proto here would clash with the
grpcio-health-checking package's descriptors if both were imported.)"""

from __future__ import annotations

CHECK_METHOD = "/grpc.health.v1.Health/Check"

# HealthCheckResponse.ServingStatus
STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_request(service: str) -> bytes:
    """HealthCheckRequest{service = 1 (string)}."""
    data = service.encode("utf-8")
    return (b"\x0a" + _varint(len(data)) + data) if data else b""


def decode_response(data: bytes) -> str:
    """HealthCheckResponse{status = 1 (enum)} -> the status name. Unknown fields skipped."""
    status, i = 0, 0
    while i < len(data):
        key, i = _read_varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(data, i)
            if field == 1:
                status = value
        elif wire == 2:
            length, i = _read_varint(data, i)
            i += length
        elif wire == 5:
            i += 4
        elif wire == 1:
            i += 8
        else:
            raise ValueError(f"HealthCheckResponse: wire type {wire}")
    return STATUS_NAMES.get(status, f"STATUS_{status}")


def _read_varint(data: bytes, i: int):
    shift, value = 0, 0
    while True:
        if i >= len(data):
            raise ValueError("HealthCheckResponse: truncated varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
