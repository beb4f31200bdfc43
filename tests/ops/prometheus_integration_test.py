"""A real Prometheus scraping a real kvtierd.

Starts kvtierd (kvtier.testing.Daemon; $KVTIERD) and Prometheus ($PROMETHEUS, default
/usr/bin/prometheus) on 127.0.0.1 at a free port, with a temporary TSDB and a generated
config that scrapes the daemon every second and loads deploy/prometheus/alerts.yml. Drives
traffic with `kvtierctl demo` ($KVTIERCTL), then polls Prometheus's HTTP API with a deadline
until the kvtier_ series carry the values the traffic implies; checks that the alert rules
loaded and evaluate without error, and that Prometheus accepts every query of the Grafana
dashboard. Both processes are stopped on every exit path.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
from typing import Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import opslib  # noqa: E402  pylint: disable=wrong-import-position

PROMETHEUS = os.environ.get("PROMETHEUS", "/usr/bin/prometheus")
HOST_CAPACITY = 3 << 30
DEADLINE_SECONDS = 90  # for each series to reach its value


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """A Prometheus server in a temporary directory (a context manager)."""

    def __init__(self, metrics_port: int, timeout: float = 60) -> None:
        self.dir = tempfile.mkdtemp(prefix="kvtier-prometheus-")
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = os.path.join(self.dir, "prometheus.log")
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w", encoding="utf-8") as f:
            # JSON is YAML: no quoting questions.
            json.dump({
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [opslib.ALERTS],
                "scrape_configs": [{
                    "job_name": "kvtier",
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
                }],
            }, f)
        try:
            # The port may be taken between free_port() and the bind: try a few.
            for _ in range(5):
                self.port = free_port()
                if self._start(config, timeout):
                    return
            raise AssertionError("Prometheus did not start; log:\n" + self.log_tail())
        except BaseException:
            self.close()
            raise

    def _start(self, config: str, timeout: float) -> bool:
        """True once /-/ready answers; False if Prometheus exited (port taken)."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}",
                 f"--storage.tsdb.path={os.path.join(self.dir, 'data')}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                opslib.http_get(f"{self.url}/-/ready", timeout=2)
                return True
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)
        raise AssertionError(f"Prometheus not ready after {timeout:g}s; log:\n" + self.log_tail())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params: str) -> object:
        query = urllib.parse.urlencode(params)
        body = json.loads(opslib.http_get(f"{self.url}/api/v1/{path}?{query}"))
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list:
        data = self.api("query", query=expr)
        return data["result"]

    def log_tail(self, nbytes: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - nbytes))
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Prometheus":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def poll(what: str, check: Callable[[], Optional[str]], timeout: float = DEADLINE_SECONDS):
    """Calls check() until it returns None (done); AssertionError with its last message."""
    deadline = time.monotonic() + timeout
    while True:
        problem = check()
        if problem is None:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"after {timeout:g}s, {what}: {problem}")
        time.sleep(0.25)


class PrometheusIntegrationTest(unittest.TestCase):
    def test_prometheus_scrapes_kvtierd(self) -> None:
        with opslib.Daemon(extra_flags=[f"--host_capacity_bytes={HOST_CAPACITY}"]) as daemon, \
                Prometheus(daemon.metrics_port) as prom:
            try:
                self.run_checks(daemon, prom)
            except BaseException:
                sys.stderr.write("kvtierd log tail:\n" + daemon.log_tail() +
                                 "\nprometheus log tail:\n" + prom.log_tail() + "\n")
                raise

    def expect_value(self, prom: Prometheus, expr: str, want: float) -> None:
        def check() -> Optional[str]:
            result = prom.query(expr)
            if len(result) != 1:
                return f"{expr} returned {len(result)} series: {result}"
            got = float(result[0]["value"][1])
            return None if got == want else f"{expr} = {got}, want {want}"

        poll(f"Prometheus's {expr}", check)

    def run_checks(self, daemon: opslib.Daemon, prom: Prometheus) -> None:
        # The target is up before any traffic.
        self.expect_value(prom, 'up{job="kvtier"}', 1)
        self.expect_value(prom, 'kvtier_tier_capacity_bytes{job="kvtier", tier="host"}',
                          HOST_CAPACITY)

        opslib.drive_traffic(daemon)
        rows = opslib.DEMO_ROWS
        calls = -(-opslib.DEMO_LAYERS // opslib.DEMO_LAYERS_PER_CALL)
        self.expect_value(prom, "kvtier_repairs_total", 1)
        self.expect_value(prom, "kvtier_offloaded_rows_total", rows * calls)
        self.expect_value(prom, "kvtier_offloaded_bytes_total", rows * opslib.DEMO_ROW_BYTES)
        self.expect_value(prom, "kvtier_promoted_rows_total", opslib.DEMO_BUDGET)
        self.expect_value(prom, "kvtier_released_rows_total", rows)
        self.expect_value(prom, "kvtier_sessions", 0)
        self.expect_value(
            prom, 'kvtier_rpc_duration_seconds_count{method="Offload", code="OK"}', calls)
        self.expect_value(
            prom, 'kvtier_rpc_duration_seconds_count{method="GetSession", code="NOT_FOUND"}', 1)
        self.expect_value(
            prom, 'sum(kvtier_repair_stage_duration_seconds_count{stage="total"})', 1)
        self.expect_value(prom, 'count(kvtier_build_info == 1)', 1)
        # Histograms work in PromQL: the one repair's total time is a positive quantile.
        def positive_quantile() -> Optional[str]:
            result = prom.query('histogram_quantile(0.5, '
                                'kvtier_repair_stage_duration_seconds_bucket{stage="total"})')
            if len(result) != 1:
                return f"{len(result)} series"
            value = float(result[0]["value"][1])
            return None if 0 < value < 60 else f"p50 = {value}"

        poll("the repair's p50", positive_quantile)

        # Every alert rule loaded and evaluates without error; none fires on a healthy daemon.
        def rules_healthy() -> Optional[str]:
            groups = prom.api("rules")["groups"]
            rules = {r["name"]: r for g in groups for r in g["rules"]}
            want = {name for name, _ in opslib.alert_expressions()}
            if set(rules) != want:
                return f"rules loaded: {sorted(rules)}, want {sorted(want)}"
            for name, rule in rules.items():
                # Before its first evaluation a rule reports the zero time, 0001-01-01.
                if rule.get("lastEvaluation", "0001").startswith("0001"):
                    return f"rule {name} not evaluated yet"
                if rule.get("health") != "ok":
                    return f"rule {name}: health {rule.get('health')!r} {rule.get('lastError')!r}"
                if rule.get("state") != "inactive":
                    return f"rule {name} is {rule.get('state')} on a healthy daemon"
            return None

        poll("the alert rules", rules_healthy)

        # Prometheus accepts every dashboard query, with Grafana's variables filled in, and
        # the core panels have data.
        for title, expr in opslib.dashboard_expressions():
            filled = (expr.replace("$__rate_interval", "1m").replace("$instance", ".*"))
            try:
                prom.query(filled)
            except (AssertionError, urllib.error.HTTPError) as e:
                raise AssertionError(f"dashboard panel {title!r}: Prometheus rejects "
                                     f"{filled!r}: {e}") from None
        # OpenSession, the Offload calls, Repair, Release, GetSession found and not found.
        self.expect_value(prom, "sum(kvtier_rpc_duration_seconds_count)", calls + 5)


if __name__ == "__main__":
    unittest.main(verbosity=2)
