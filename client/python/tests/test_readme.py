"""The Python snippets of README.md and client/python/README.md run as printed.

Each snippet connects to ``unix://kvtier-data/kvtierd.sock`` relative to the working
directory (where scripts/run.sh puts the socket). The test runs it in a fresh directory
whose kvtier-data/kvtierd.sock links to the test daemon's socket, so a snippet that drifts
from the SDK fails here.
"""

import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", "..", ".."))


def python_block(path, heading):
    """The first ```python block after the line `heading` in the Markdown file `path`."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start = text.index(heading)
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert match, f"no python block after {heading!r} in {path}"
    return match.group(1)


@pytest.mark.parametrize("path,heading", [
    ("README.md", "## Using it from an engine (Python SDK)"),
    ("client/python/README.md", "## Quick start"),
])
def test_snippet_runs_against_kvtierd(daemon, tmp_path, path, heading):
    snippet = python_block(os.path.join(REPO, path), heading)
    assert 'kvtier.Client("unix://kvtier-data/kvtierd.sock")' in snippet
    (tmp_path / "kvtier-data").mkdir()
    os.symlink(daemon.unix_socket, tmp_path / "kvtier-data" / "kvtierd.sock")
    (tmp_path / "snippet.py").write_text(snippet)
    done = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"{path} snippet failed:\n{done.stdout}\n{done.stderr}"
    assert done.stdout.startswith("SERVING\n"), done.stdout
    # It printed the chosen positions and the payload shape of a budget-64 repair.
    assert "(4, 64, 2, 64)" in done.stdout, done.stdout
