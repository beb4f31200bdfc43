"""Plain Python views of the API's messages (dataclasses), and the enums.

Every result keeps the message it came from in ``.proto`` (left out of ``repr``) for fields
a future server adds before this SDK knows them.
"""

from __future__ import annotations

import enum
import random
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from kvtier.errors import InvalidArgument, ProtocolError
from kvtier.v1 import kvtier_pb2 as pb

__all__ = [
    "Geometry", "SessionInfo", "OffloadResult", "RepairResult", "PromoteResult",
    "ReleaseResult", "PauseResult", "StageTimings", "TierStats", "Stats", "RetryPolicy",
    "ReturnMode", "Selector", "ScoringMode", "DTYPES",
]

# Session dtype name -> (proto enum, bytes per element).
DTYPES = {
    "float16": (pb.DTYPE_FLOAT16, 2),
    "bfloat16": (pb.DTYPE_BFLOAT16, 2),
    "float32": (pb.DTYPE_FLOAT32, 4),
}
_DTYPE_ALIASES = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32",
                  "float": "float32"}
_DTYPE_NAMES = {v[0]: k for k, v in DTYPES.items()}

# The proto's integer types: (lowest, highest).
_INT_RANGES = {
    "int32": (-(1 << 31), (1 << 31) - 1),
    "uint32": (0, (1 << 32) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
    "uint64": (0, (1 << 64) - 1),
}


def int_field(value: Any, name: str, kind: str = "int32") -> int:
    """``value`` as an int that fits the proto field type ``kind`` ("int32", "uint32",
    "int64", "uint64"); InvalidArgument naming ``name`` for a non-int or a value out of
    range (protobuf would raise a plain ValueError)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgument(f"{name}: an int, got {type(value).__name__}")
    lo, hi = _INT_RANGES[kind]
    if not lo <= int(value) <= hi:
        raise InvalidArgument(f"{name}: {int(value)} is outside the {kind} range [{lo}, {hi}]")
    return int(value)


def dtype_name(dtype: Union[str, int, Any], name: str = "dtype") -> str:
    """Normalizes a dtype given as "float16"/"fp16", the proto enum value, a numpy dtype
    (float16, float32, ml_dtypes.bfloat16) or a torch dtype to "float16", "bfloat16" or
    "float32". InvalidArgument (a ValueError) naming ``name`` for anything else."""
    if isinstance(dtype, (int, np.integer)) and not isinstance(dtype, bool):
        if int(dtype) in _DTYPE_NAMES:
            return _DTYPE_NAMES[int(dtype)]
        raise InvalidArgument(f"{name}: unknown DType enum value {int(dtype)}")
    if isinstance(dtype, (np.dtype, type)):
        try:
            text = np.dtype(dtype).name
        except TypeError:
            text = str(dtype)
    else:
        text = str(dtype).lower().removeprefix("torch.")
    text = _DTYPE_ALIASES.get(text, text)
    if text not in DTYPES:
        raise InvalidArgument(f"{name}: {dtype!r} is not one of float16, bfloat16, float32")
    return text


class _ProtoEnum(enum.IntEnum):
    @classmethod
    def parse(cls, value: Union[str, int, "_ProtoEnum", None],
              name: Optional[str] = None) -> "_ProtoEnum":
        """The member named ``value`` (any case) or numbered ``value``; None: the default.
        InvalidArgument naming the argument ``name`` (default: the class name in
        snake_case, e.g. "return_mode") otherwise."""
        if value is None:
            return cls(0)
        arg = name or re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
        names = ", ".join(m.name.lower() for m in cls)
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                raise InvalidArgument(f"{arg}: {value!r} is not one of {names}") from None
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InvalidArgument(f"{arg}: a string or an int, got {type(value).__name__}")
        try:
            return cls(int(value))
        except ValueError:
            raise InvalidArgument(f"{arg}: {int(value)} is not one of {names}") from None


class ReturnMode(_ProtoEnum):
    """What Repair and Promote return: PAYLOAD (positions, then K and V of every layer) or
    POSITIONS (positions only). UNSPECIFIED lets the server decide (PAYLOAD, or POSITIONS in
    an index-only session)."""
    UNSPECIFIED = pb.RETURN_MODE_UNSPECIFIED
    PAYLOAD = pb.RETURN_MODE_PAYLOAD
    POSITIONS = pb.RETURN_MODE_POSITIONS


class Selector(_ProtoEnum):
    UNSPECIFIED = pb.SELECTOR_UNSPECIFIED
    REPAIRKV = pb.SELECTOR_REPAIRKV
    OLDEST = pb.SELECTOR_OLDEST
    RANDOM = pb.SELECTOR_RANDOM


class ScoringMode(_ProtoEnum):
    AUTO = pb.SCORING_MODE_AUTO
    EXACT = pb.SCORING_MODE_EXACT
    FAST = pb.SCORING_MODE_FAST


@dataclass(frozen=True)
class Geometry:
    """Shape of a session's rows. ``dtype``: "float16", "bfloat16" or "float32".
    ``scoring_layers``: layers whose keys Repair scores (empty: every layer).
    ``index_only``: the server keeps the scoring layers' keys only (docs/API.md)."""

    num_layers: int
    num_q_heads: int
    num_kv_heads: int
    head_dim: int
    dtype: str = "float16"
    index_only: bool = False
    scoring_layers: Tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", dtype_name(self.dtype, "Geometry.dtype"))
        object.__setattr__(self, "scoring_layers", tuple(
            int_field(x, f"Geometry.scoring_layers[{i}]")
            for i, x in enumerate(self.scoring_layers)))
        for name in ("num_layers", "num_q_heads", "num_kv_heads", "head_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"Geometry.{name}: an int, got {type(value).__name__}")
            object.__setattr__(self, name, int_field(value, f"Geometry.{name}"))

    @property
    def element_bytes(self) -> int:
        return DTYPES[self.dtype][1]

    @property
    def layer_row_bytes(self) -> int:
        """Bytes of the keys (or the values) of one row in one layer."""
        return self.num_kv_heads * self.head_dim * self.element_bytes

    @property
    def effective_scoring_layers(self) -> Tuple[int, ...]:
        """The scoring layers, ascending (every layer when none was named)."""
        if self.scoring_layers:
            return tuple(sorted(self.scoring_layers))
        return tuple(range(self.num_layers))

    def to_proto(self) -> pb.Geometry:
        return pb.Geometry(num_layers=self.num_layers, num_q_heads=self.num_q_heads,
                           num_kv_heads=self.num_kv_heads, head_dim=self.head_dim,
                           dtype=DTYPES[self.dtype][0], scoring_layers=list(self.scoring_layers),
                           index_only=self.index_only)

    @classmethod
    def from_proto(cls, g: pb.Geometry) -> "Geometry":
        """The geometry a server reported. ProtocolError for a dtype this SDK does not know
        (DTYPE_UNSPECIFIED or a newer enum value): guessing one would misread the rows."""
        dtype = _DTYPE_NAMES.get(g.dtype)
        if dtype is None:
            raise ProtocolError(f"geometry.dtype: the server reported DType {g.dtype}, which "
                                "is not one of float16, bfloat16, float32")
        return cls(num_layers=g.num_layers, num_q_heads=g.num_q_heads,
                   num_kv_heads=g.num_kv_heads, head_dim=g.head_dim, dtype=dtype,
                   index_only=g.index_only, scoring_layers=tuple(g.scoring_layers))


def _fields(msg: Any, names: Sequence[str]) -> dict:
    return {n: getattr(msg, n) for n in names}


@dataclass
class SessionInfo:
    session_id: str
    tenant: str
    geometry: Geometry
    ttl_seconds: int
    rows_stored: int
    rows_complete: int
    rows_candidate: int
    rows_promoted: int
    bytes: int
    created_unix_ms: int
    expires_unix_ms: int
    row_bytes: int
    segments: int
    segments_on_disk: int
    proto: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, s: pb.SessionInfo) -> "SessionInfo":
        return cls(geometry=Geometry.from_proto(s.geometry), proto=s, **_fields(s, (
            "session_id", "tenant", "ttl_seconds", "rows_stored", "rows_complete",
            "rows_candidate", "rows_promoted", "bytes", "created_unix_ms", "expires_unix_ms",
            "row_bytes", "segments", "segments_on_disk")))


@dataclass
class OffloadResult:
    """What the server counted for one offload (over every stream chunk)."""
    chunks: int          # chunks applied
    rows_written: int    # row-layer-range writes (one per position per chunk)
    rows_completed: int  # rows that became complete (every layer present)
    bytes: int           # K+V payload bytes received
    tier: str
    proto: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, r: pb.OffloadResponse) -> "OffloadResult":
        return cls(proto=r, **_fields(r, ("chunks", "rows_written", "rows_completed", "bytes",
                                          "tier")))


_TIMING_FIELDS = ("score_seconds", "select_seconds", "gather_seconds", "send_seconds",
                  "total_seconds", "first_pass_seconds", "rescore_seconds")


@dataclass
class StageTimings:
    score_seconds: float = 0.0
    select_seconds: float = 0.0
    gather_seconds: float = 0.0
    send_seconds: float = 0.0
    total_seconds: float = 0.0
    first_pass_seconds: float = 0.0
    rescore_seconds: float = 0.0

    @classmethod
    def from_proto(cls, t: pb.StageTimings) -> "StageTimings":
        return cls(**_fields(t, _TIMING_FIELDS))


@dataclass
class RepairResult:
    """A repair's selection and, in payload mode, the chosen rows.

    ``chosen``: positions in the order taken (np.int64); ``sorted``: the same ascending;
    ``scores``: each chosen row's score (np.float64, NaN for fast-mode burst fill; empty for
    the controls); ``keys``/``values``: ``[num_layers, len(chosen), num_kv_heads, head_dim]``
    in ``chosen`` order, of the session dtype, or None in positions mode. ``timings``: every
    stage (from the stream's ``done``). ``request_id``: the idempotency key that was sent.
    """
    chosen: np.ndarray
    sorted: np.ndarray
    scores: np.ndarray
    candidates: int
    replayed: bool
    scorer: str
    scoring_mode: ScoringMode
    rescored: int
    payload_chunks: int
    payload_bytes: int
    keys: Optional[np.ndarray] = field(repr=False)
    values: Optional[np.ndarray] = field(repr=False)
    timings: StageTimings
    request_id: str
    bytes_received: int
    summary: Any = field(default=None, repr=False, compare=False)

    @property
    def positions(self) -> np.ndarray:
        """The row order of ``keys`` and ``values`` (= ``chosen``)."""
        return self.chosen


@dataclass
class PromoteResult:
    """Rows returned by Promote: ``positions`` as requested, ``keys``/``values``
    ``[num_layers, len(positions), num_kv_heads, head_dim]`` in that order (None in
    positions mode)."""
    positions: np.ndarray
    keys: Optional[np.ndarray] = field(repr=False)
    values: Optional[np.ndarray] = field(repr=False)
    payload_chunks: int
    payload_bytes: int
    timings: StageTimings
    bytes_received: int
    summary: Any = field(default=None, repr=False, compare=False)


@dataclass
class ReleaseResult:
    rows_released: int
    bytes_freed: int
    session_released: bool
    proto: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, r: pb.ReleaseResponse) -> "ReleaseResult":
        return cls(proto=r, **_fields(r, ("rows_released", "bytes_freed", "session_released")))


@dataclass
class PauseResult:
    segments_loaded: int
    bytes_loaded: int
    segments_resident: int
    segments_left: int
    seconds: float
    proto: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, r: pb.BeginPauseResponse) -> "PauseResult":
        return cls(proto=r, **_fields(r, ("segments_loaded", "bytes_loaded",
                                          "segments_resident", "segments_left", "seconds")))


@dataclass
class TierStats:
    name: str
    bytes: int
    capacity_bytes: int
    segments: int


@dataclass
class Stats:
    tiers: Tuple[TierStats, ...]
    sessions: int
    rows: int
    scorer: str
    version: str
    uptime_seconds: float
    repairs: int
    offloaded_rows: int
    durability: str
    placement_policy: str
    cold_format: str
    proto: Any = field(default=None, repr=False, compare=False)

    def tier(self, name: str) -> TierStats:
        for t in self.tiers:
            if t.name == name:
                return t
        raise KeyError(name)

    @classmethod
    def from_proto(cls, r: pb.StatsResponse) -> "Stats":
        tiers = tuple(TierStats(t.name, t.bytes, t.capacity_bytes, t.segments) for t in r.tiers)
        return cls(tiers=tiers, proto=r, **_fields(r, (
            "sessions", "rows", "scorer", "version", "uptime_seconds", "repairs",
            "offloaded_rows", "durability", "placement_policy", "cold_format")))


@dataclass(frozen=True)
class RetryPolicy:
    """How calls are retried: only UNAVAILABLE (the server could not be reached or the
    connection broke), only for calls that are safe to repeat, never past the call's
    deadline. ``max_attempts`` counts the first attempt (1 disables retries). The wait before
    retry n is ``min(initial_backoff * 2**(n-1), max_backoff)`` seconds times a random factor
    in ``[1 - jitter, 1 + jitter]``."""

    max_attempts: int = 4
    initial_backoff: float = 0.05
    max_backoff: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts: must be >= 1")
        if not 0 <= self.initial_backoff <= self.max_backoff:
            raise ValueError("RetryPolicy: need 0 <= initial_backoff <= max_backoff")
        if not 0 <= self.jitter < 1:
            raise ValueError("RetryPolicy.jitter: must be in [0, 1)")

    def backoff(self, retry: int, rng: Optional[random.Random] = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        base = min(self.initial_backoff * (2 ** (retry - 1)), self.max_backoff)
        r = (rng or random).uniform(1 - self.jitter, 1 + self.jitter) if self.jitter else 1.0
        return base * r
