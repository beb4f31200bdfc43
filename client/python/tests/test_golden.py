"""The golden repair cases (KVTIER_REFERENCE_DIR, see its README.md) played through the
server with the Python SDK: the chosen positions must be exactly the expected ones."""

import json
import os

import numpy as np
import pytest

import kvtier

REFERENCE_DIR = os.environ.get("KVTIER_REFERENCE_DIR", "")


def case_dirs():
    if not REFERENCE_DIR or not os.path.isdir(REFERENCE_DIR):
        return []
    return sorted(os.path.join(REFERENCE_DIR, d) for d in os.listdir(REFERENCE_DIR)
                  if os.path.isfile(os.path.join(REFERENCE_DIR, d, "case.json")))


def test_reference_dir_has_cases():
    assert REFERENCE_DIR, "set KVTIER_REFERENCE_DIR to the golden repair cases"
    assert len(case_dirs()) >= 1, f"no case under {REFERENCE_DIR}"


def load(case_dir, name, dtype):
    if name is None:
        return None
    return np.fromfile(os.path.join(case_dir, name), dtype=dtype)


@pytest.mark.parametrize("case_dir", case_dirs(), ids=os.path.basename)
def test_server_chooses_exactly_the_expected_rows(client, case_dir):
    with open(os.path.join(case_dir, "case.json")) as f:
        case = json.load(f)
    geo, files = case["geometry"], case["files"]
    layers, hq, hkv, dim = (geo["num_layers"], geo["num_q_heads"], geo["num_kv_heads"],
                            geo["head_dim"])
    rows, tokens = case["num_rows"], case["signal_tokens"]
    positions = load(case_dir, files["positions"], "<i8")
    # Case keys are [layer][kv_head][row][dim]; the API takes [layer][row][kv_head][dim].
    keys = load(case_dir, files["keys"], "<f4").reshape(layers, hkv, rows, dim)
    keys = np.ascontiguousarray(keys.transpose(0, 2, 1, 3))
    queries = load(case_dir, files["queries"], "<f4").reshape(layers, hq, tokens, dim)
    lse = load(case_dir, files["lse_active"], "<f4")
    importance = load(case_dir, files["importance"], "<f4")

    # float32 only: the expected output does not hold for fp16/bf16 keys.
    info = client.open_session(kvtier.Geometry(num_layers=layers, num_q_heads=hq,
                                               num_kv_heads=hkv, head_dim=dim,
                                               dtype="float32"))
    try:
        client.offload(info.session_id, positions, keys, np.zeros_like(keys),
                       importance=importance)
        result = client.repair(
            info.session_id, queries, budget=case["budget"],
            lse=None if lse is None else lse.reshape(layers, hq, tokens),
            burst_left=case["burst_left"], burst_right=case["burst_right"],
            selector=case["selector"], return_mode="positions", scoring_mode="exact")
    finally:
        client.release(info.session_id, whole_session=True)
    expected = case["expected"]
    assert result.chosen.tolist() == expected["chosen"]
    assert result.sorted.tolist() == expected["sorted"]
    for needle in case.get("needle_positions") or []:
        assert needle in result.chosen
