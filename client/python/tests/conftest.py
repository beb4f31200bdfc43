"""Fixtures: one real kvtierd (from $KVTIERD) per test module, reached over its Unix socket.

The suite runs against the installed package (build/venv), never the source tree: the
ctest entry runs it from a directory where ``kvtier`` is not importable as a folder.
"""

import os

import numpy as np
import pytest
import pytest_asyncio

import kvtier
import kvtier.testing


def pytest_configure(config):
    if not os.environ.get("KVTIERD"):
        raise pytest.UsageError("set KVTIERD to the kvtierd binary the tests start")
    # ctest sets KVTIER_REQUIRE_INSTALLED=1: the suite must exercise what
    # `pip install ./client/python` installed, not the source folder.
    if os.environ.get("KVTIER_REQUIRE_INSTALLED") == "1":
        source = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        where = os.path.dirname(os.path.abspath(kvtier.__file__))
        if where.startswith(source + os.sep) or "site-packages" not in where:
            raise pytest.UsageError(f"kvtier imported from {where}, not an installed copy")


@pytest.fixture(scope="module")
def daemon():
    with kvtier.testing.Daemon() as d:
        yield d


@pytest.fixture
def client(daemon):
    with kvtier.Client(daemon.unix_target, timeout=60.0) as c:
        yield c


@pytest_asyncio.fixture
async def aclient(daemon):
    async with kvtier.AsyncClient(daemon.unix_target, timeout=60.0) as c:
        yield c


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def kv(rng, layers, rows, heads, dim, dtype):
    """Random keys or values of a numpy dtype (bfloat16: kvtier.BFLOAT16 from float32)."""
    x = rng.standard_normal((layers, rows, heads, dim)).astype(np.float32)
    if dtype == "bfloat16":
        bits = (x.view(np.uint32) >> 16).astype(np.uint16)
        return bits.view(kvtier.BFLOAT16)
    return x.astype(dtype)
