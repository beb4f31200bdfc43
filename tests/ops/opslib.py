"""Shared helpers of the operations tests (tests/ops): a kvtierd with traffic, /metrics
parsing, METRICS.md parsing and PromQL metric-name extraction.

Standard library only (plus PyYAML where a test reads YAML). Paths come from the
environment that tests/ops/CMakeLists.txt sets: KVTIERD, KVTIERCTL, KVTIER_SOURCE_DIR.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Set, Tuple

SOURCE_DIR = os.environ.get(
    "KVTIER_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
# kvtier.testing (the SDK's daemon starter) is standard library only; use the tree's copy.
sys.path.insert(0, os.path.join(SOURCE_DIR, "client", "python"))
from kvtier.testing import Daemon  # noqa: E402  pylint: disable=wrong-import-position

METRICS_MD = os.path.join(SOURCE_DIR, "docs", "METRICS.md")
DASHBOARD = os.path.join(SOURCE_DIR, "deploy", "grafana", "kvtier-dashboard.json")
ALERTS = os.path.join(SOURCE_DIR, "deploy", "prometheus", "alerts.yml")

# What the traffic below sends: `kvtierctl demo` with DEMO_ROWS rows, 28 layers offloaded
# DEMO_LAYERS_PER_CALL at a time, a K=96 payload repair, then the session released.
DEMO_ROWS = 2048
DEMO_LAYERS = 28
DEMO_LAYERS_PER_CALL = 4
DEMO_BUDGET = 96
DEMO_ROW_BYTES = 2 * DEMO_LAYERS * 4 * 128 * 2  # K+V, 28 layers, 4 KV heads, dim 128, fp16


def kvtierctl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs $KVTIERCTL with `args`; raises AssertionError with its output if it fails."""
    binary = os.environ["KVTIERCTL"]
    proc = subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout,
                          check=False)
    if proc.returncode != 0:
        raise AssertionError(f"kvtierctl {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def drive_traffic(daemon: Daemon) -> None:
    """Sends the demo's traffic (see DEMO_*), then one RPC that fails (GetSession of an
    unknown session: NOT_FOUND) so that a non-OK code is exported too."""
    kvtierctl("demo", f"--server={daemon.unix_target}", f"--rows={DEMO_ROWS}",
              f"--layers_per_call={DEMO_LAYERS_PER_CALL}")
    proc = subprocess.run(
        [os.environ["KVTIERCTL"], "sessions", "show", "no-such-session",
         f"--server={daemon.unix_target}"],
        capture_output=True, text=True, timeout=60, check=False)
    # kvtierctl exits 1 on an RPC error and prints the status code; anything else (a crash,
    # a usage error, UNAVAILABLE) is not the NOT_FOUND the metrics tests look for.
    if proc.returncode != 1 or "NOT_FOUND" not in proc.stderr:
        raise AssertionError(
            "kvtierctl sessions show no-such-session: expected exit 1 with NOT_FOUND, got "
            f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")


def http_get(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode("utf-8")


@dataclass
class Family:
    """One metric family of a Prometheus text exposition."""
    name: str
    type: str = "untyped"
    help: str = ""
    # Sample name (with _bucket/_sum/_count for histograms) -> list of label dicts.
    samples: List[Tuple[str, Dict[str, str], float]] = field(default_factory=list)

    def label_names(self) -> Set[str]:
        names: Set[str] = set()
        for _, labels, _ in self.samples:
            names.update(labels)
        names.discard("le")
        names.discard("quantile")
        return names

    def label_values(self, label: str) -> Set[str]:
        return {labels[label] for _, labels, _ in self.samples if label in labels}


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text: str) -> Dict[str, Family]:
    """Parses Prometheus text format 0.0.4 into families by name. Samples are attributed to
    the family of the latest # TYPE line whose name is their prefix."""
    families: Dict[str, Family] = {}
    current: Optional[Family] = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            _, kind, name, *rest = line.split(" ", 3)
            family = families.setdefault(name, Family(name))
            if kind == "TYPE":
                family.type = rest[0].strip() if rest else "untyped"
            else:
                family.help = rest[0] if rest else ""
            current = family
            continue
        if line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError(f"unparsable exposition line: {line!r}")
        sample, label_text, value = m.group(1), m.group(2) or "", m.group(3)
        labels = dict(_LABEL.findall(label_text))
        if current is not None and sample.startswith(current.name):
            owner = current
        else:
            owner = families.setdefault(sample, Family(sample))
        owner.samples.append((sample, labels, float(value)))
    return families


def scrape(daemon: Daemon) -> Dict[str, Family]:
    return parse_exposition(http_get(f"http://127.0.0.1:{daemon.metrics_port}/metrics"))


def scrape_until(daemon: Daemon, predicate, what: str, timeout: float = 30) -> Dict[str, Family]:
    """Scrapes until predicate(families) is true; AssertionError naming `what` after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        families = scrape(daemon)
        if predicate(families):
            return families
        if time.monotonic() >= deadline:
            raise AssertionError(f"after {timeout:g}s, /metrics still lacks {what}")
        time.sleep(0.1)


def kvtier_families(families: Dict[str, Family]) -> Dict[str, Family]:
    return {n: f for n, f in families.items() if n.startswith("kvtier_")}


# ---- docs/METRICS.md ----

@dataclass
class DocumentedMetric:
    name: str
    type: str
    labels: List[str]


def _cells(line: str) -> List[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table_after(text: str, heading: str) -> List[List[str]]:
    """The rows (cells) of the first Markdown table after the line `heading`."""
    lines = text.splitlines()
    try:
        start = lines.index(heading)
    except ValueError:
        raise AssertionError(f"{METRICS_MD} has no line {heading!r}") from None
    rows: List[List[str]] = []
    in_table = False
    for line in lines[start + 1:]:
        if line.startswith("|"):
            in_table = True
            rows.append(_cells(line))
        elif in_table:
            break
    if len(rows) < 3:
        raise AssertionError(f"{METRICS_MD}: no table under {heading!r}")
    return rows[2:]  # header and separator rows dropped


def _backticked(cell: str) -> List[str]:
    return re.findall(r"`([^`]+)`", cell)


def documented_metrics(path: str = METRICS_MD) -> Dict[str, DocumentedMetric]:
    """The table under '## Metrics at a glance': `name` | type | `label`, ... | meaning."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    out: Dict[str, DocumentedMetric] = {}
    for cells in _table_after(text, "## Metrics at a glance"):
        names = _backticked(cells[0])
        if len(names) != 1:
            raise AssertionError(f"{path}: metric cell {cells[0]!r} must hold one `name`")
        out[names[0]] = DocumentedMetric(names[0], cells[1], _backticked(cells[2]))
    return out


def documented_label_values(path: str = METRICS_MD) -> Dict[str, Optional[Set[str]]]:
    """The table under '## Labels': `label` | values. A label whose values cell says
    "any" maps to None (its values are not enumerated)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    out: Dict[str, Optional[Set[str]]] = {}
    for cells in _table_after(text, "## Labels"):
        names = _backticked(cells[0])
        if len(names) != 1:
            raise AssertionError(f"{path}: label cell {cells[0]!r} must hold one `label`")
        values = cells[1]
        out[names[0]] = None if re.match(r"^\s*any\b", values) else set(_backticked(values))
    return out


# ---- PromQL ----

_PROMQL_KEYWORDS = {
    # aggregations, functions and keywords that look like identifiers
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "by", "without", "on", "ignoring", "group_left",
    "group_right", "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
}


def promql_metric_names(expr: str) -> Set[str]:
    """Metric names that `expr` selects: identifiers not followed by '(' that are neither
    keywords nor label names (inside {...} or by/on/without (...) lists), nor strings or
    durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings out
    text = re.sub(r"\{[^}]*\}", "{}", text)  # matchers out
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1()",
                  text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # range durations out
    text = re.sub(r"\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?", "1", text)  # Grafana variables
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        ident = m.group(0)
        rest = text[m.end():].lstrip()
        if rest.startswith("("):
            continue  # a function or an aggregation
        if ident.lower() in _PROMQL_KEYWORDS:
            continue
        if m.start() > 0 and (text[m.start() - 1].isdigit() or text[m.start() - 1] == "."):
            continue  # a number's exponent or a duration unit
        names.add(ident)
    return names


def promql_matchers(expr: str) -> List[Tuple[str, Set[str]]]:
    """(metric name, label names) for every `name{label=...}` selector in `expr`."""
    out = []
    for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}", expr):
        labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(2)))
        out.append((m.group(1), labels))
    return out


def resolve_series_name(name: str, families: Dict[str, Family]) -> Optional[Family]:
    """The family that exports series `name` (histogram _bucket/_sum/_count resolved)."""
    if name in families:
        return families[name]
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            base = families.get(name[: -len(suffix)])
            if base is not None and base.type in ("histogram", "summary"):
                if suffix == "_bucket" and base.type != "histogram":
                    return None
                return base
    return None


def dashboard_expressions(path: str = DASHBOARD) -> List[Tuple[str, str]]:
    """(panel title, expr) for every target of every panel (rows' nested panels included)."""
    with open(path, encoding="utf-8") as f:
        dashboard = json.load(f)
    out = []

    def walk(panels: Iterable[dict]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                if "expr" in target:
                    out.append((panel.get("title", "?"), target["expr"]))

    walk(dashboard.get("panels", []))
    return out


def alert_expressions(path: str = ALERTS) -> List[Tuple[str, str]]:
    import yaml  # PyYAML (scripts/requirements-test.txt)

    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    return [(rule.get("alert") or rule.get("record"), rule["expr"])
            for group in doc["groups"] for rule in group["rules"]]
