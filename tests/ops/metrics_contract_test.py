"""The metrics contract: a real kvtierd's /metrics (after traffic) against docs/METRICS.md,
the Grafana dashboard and the alert rules.

Starts kvtierd (kvtier.testing.Daemon; $KVTIERD), runs `kvtierctl demo` ($KVTIERCTL) and one
failing GetSession, scrapes /metrics once every family is there, then checks:
- every exported kvtier_ family is documented in docs/METRICS.md and every documented one
  is exported, with the documented type, label names and label values;
- the values the traffic implies (rows, bytes, repairs, sessions, capacity, codes);
- every metric name in deploy/grafana/kvtier-dashboard.json and deploy/prometheus/alerts.yml
  exists (histogram _bucket/_sum/_count resolved), with the labels its selectors name.
"""

from __future__ import annotations

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import opslib  # noqa: E402  pylint: disable=wrong-import-position

HOST_CAPACITY = 3 << 30  # what --host_capacity_bytes says, and the gauge must say
DISK_CAPACITY = 5 << 30
# Labels that Prometheus adds to every scraped series (target labels).
TARGET_LABELS = {"job", "instance"}


class MetricsContractTest(unittest.TestCase):
    daemon: opslib.Daemon
    families: dict

    @classmethod
    def setUpClass(cls) -> None:
        cls.daemon = opslib.Daemon(extra_flags=[f"--host_capacity_bytes={HOST_CAPACITY}",
                                                f"--disk_capacity_bytes={DISK_CAPACITY}"])
        try:
            opslib.drive_traffic(cls.daemon)
            # The tier manager's counters are copied once a second: wait for them.
            cls.families = opslib.kvtier_families(opslib.scrape_until(
                cls.daemon, lambda f: "kvtier_tier_moves_total" in f
                and "kvtier_policy_accesses_total" in f, "the tier counters"))
        except BaseException:
            log = cls.daemon.log_tail()
            cls.daemon.close()
            sys.stderr.write("kvtierd log tail:\n" + log)
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.daemon.close()

    def setUp(self) -> None:
        self.documented = opslib.documented_metrics()
        self.label_values = opslib.documented_label_values()

    # ---- docs/METRICS.md ----

    def test_every_exported_family_is_documented(self) -> None:
        missing = sorted(set(self.families) - set(self.documented))
        self.assertEqual(missing, [], "exported by kvtierd but not in docs/METRICS.md")

    def test_every_documented_family_is_exported(self) -> None:
        missing = sorted(set(self.documented) - set(self.families))
        self.assertEqual(missing, [], "in docs/METRICS.md but not exported by kvtierd")

    def test_documented_types(self) -> None:
        for name, doc in self.documented.items():
            if name in self.families:
                self.assertEqual(self.families[name].type, doc.type, name)

    def test_documented_label_names(self) -> None:
        for name, doc in self.documented.items():
            if name in self.families:
                self.assertEqual(sorted(self.families[name].label_names()), sorted(doc.labels),
                                 f"labels of {name}")

    def test_every_label_has_its_values_documented(self) -> None:
        for name, family in self.families.items():
            for label in family.label_names():
                self.assertIn(label, self.label_values,
                              f"label {label} of {name} missing from '## Labels'")
                allowed = self.label_values[label]
                if allowed is None:  # "any ..."
                    continue
                extra = family.label_values(label) - allowed
                self.assertEqual(extra, set(), f"{name}: undocumented values of {label}")

    def test_histograms_end_in_seconds_and_counters_in_total(self) -> None:
        for name, family in self.families.items():
            if family.type == "counter":
                self.assertTrue(name.endswith("_total"), name)
            if family.type == "histogram":
                self.assertTrue(name.endswith("_seconds"), name)

    # ---- values the traffic implies ----

    def value(self, name: str, **labels: str) -> float:
        family = opslib.resolve_series_name(name, self.families)
        self.assertIsNotNone(family, name)
        matches = [v for sample, l, v in family.samples
                   if sample == name and all(l.get(k) == v2 for k, v2 in labels.items())]
        self.assertEqual(len(matches), 1, f"{name}{labels}: {matches}")
        return matches[0]

    def test_values_after_the_demo(self) -> None:
        rows = opslib.DEMO_ROWS
        calls = -(-opslib.DEMO_LAYERS // opslib.DEMO_LAYERS_PER_CALL)
        self.assertEqual(self.value("kvtier_offloaded_rows_total"), rows * calls)
        self.assertEqual(self.value("kvtier_offloaded_bytes_total"), rows * opslib.DEMO_ROW_BYTES)
        self.assertEqual(self.value("kvtier_repairs_total"), 1)
        self.assertEqual(self.value("kvtier_promoted_rows_total"), opslib.DEMO_BUDGET)
        self.assertEqual(self.value("kvtier_promoted_bytes_total"),
                         opslib.DEMO_BUDGET * opslib.DEMO_ROW_BYTES)
        self.assertEqual(self.value("kvtier_released_rows_total"), rows)
        # A whole session gives back its payload and its score index.
        self.assertGreaterEqual(self.value("kvtier_released_bytes_total"),
                                rows * opslib.DEMO_ROW_BYTES)
        self.assertEqual(self.value("kvtier_sessions"), 0)
        self.assertEqual(self.value("kvtier_tier_capacity_bytes", tier="host"), HOST_CAPACITY)
        self.assertEqual(self.value("kvtier_tier_capacity_bytes", tier="nvme"), DISK_CAPACITY)
        self.assertEqual(self.value("kvtier_tier_bytes", tier="host"), 0)
        self.assertEqual(self.value("kvtier_scorer_info", scorer="cpu"), 1)
        self.assertEqual(self.value("kvtier_data_loss_total"), 0)

    def test_rpc_counts_by_method_and_code(self) -> None:
        count = "kvtier_rpc_duration_seconds_count"
        calls = -(-opslib.DEMO_LAYERS // opslib.DEMO_LAYERS_PER_CALL)
        self.assertEqual(self.value(count, method="OpenSession", code="OK"), 1)
        self.assertEqual(self.value(count, method="Offload", code="OK"), calls)
        self.assertEqual(self.value(count, method="Repair", code="OK"), 1)
        self.assertEqual(self.value(count, method="Release", code="OK"), 1)
        self.assertEqual(self.value(count, method="GetSession", code="NOT_FOUND"), 1)
        for stage in ("score", "select", "gather", "send", "total"):
            self.assertEqual(
                self.value("kvtier_repair_stage_duration_seconds_count", stage=stage), 1, stage)

    def test_build_info_and_start_time(self) -> None:
        versions = self.families["kvtier_build_info"].label_values("version")
        self.assertEqual(len(versions), 1)
        self.assertRegex(next(iter(versions)), r"^\d+\.\d+\.\d+")
        start = self.value("kvtier_start_time_seconds")
        self.assertAlmostEqual(start, os.stat(self.daemon.ready_file).st_mtime, delta=60)

    # ---- dashboard and alerts ----

    def check_expression(self, where: str, expr: str) -> None:
        names = opslib.promql_metric_names(expr)
        self.assertTrue(any(n.startswith("kvtier_") for n in names) or names == {"up"},
                        f"{where}: no kvtier_ metric in {expr!r}")
        for name in names:
            if name == "up":  # Prometheus's own per-target series
                continue
            self.assertIsNotNone(opslib.resolve_series_name(name, self.families),
                                 f"{where}: {name} is not exported by kvtierd ({expr!r})")
        for name, labels in opslib.promql_matchers(expr):
            if name == "up":
                continue
            family = opslib.resolve_series_name(name, self.families)
            if family is None:
                continue  # reported above
            known = family.label_names() | TARGET_LABELS | (
                {"le"} if name.endswith("_bucket") else set())
            self.assertEqual(labels - known, set(),
                             f"{where}: {name} has no label(s) {labels - known} ({expr!r})")

    def test_dashboard_queries_name_exported_metrics(self) -> None:
        exprs = opslib.dashboard_expressions()
        self.assertGreaterEqual(len(exprs), 20)
        for title, expr in exprs:
            self.check_expression(f"dashboard panel {title!r}", expr)

    def test_dashboard_covers_the_required_metrics(self) -> None:
        used = set()
        for _, expr in opslib.dashboard_expressions():
            used.update(opslib.promql_metric_names(expr))
        for needed in ("kvtier_rpc_duration_seconds_count", "kvtier_rpc_duration_seconds_bucket",
                       "kvtier_repair_stage_duration_seconds_bucket", "kvtier_tier_bytes",
                       "kvtier_tier_capacity_bytes", "kvtier_tier_moved_bytes_total",
                       "kvtier_data_loss_total", "kvtier_sessions"):
            self.assertIn(needed, used)

    def test_dashboard_uses_the_datasource_variable(self) -> None:
        with open(opslib.DASHBOARD, encoding="utf-8") as f:
            dashboard = json.load(f)
        self.assertGreaterEqual(dashboard["schemaVersion"], 36)
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        self.assertEqual(variables["DS_PROMETHEUS"]["type"], "datasource")
        self.assertEqual(variables["DS_PROMETHEUS"]["query"], "prometheus")
        ids = set()

        def walk(panels):
            for panel in panels:
                self.assertNotIn(panel["id"], ids, f"duplicate panel id {panel['id']}")
                ids.add(panel["id"])
                walk(panel.get("panels", []))
                if panel["type"] == "row":
                    continue
                self.assertEqual(panel["datasource"]["uid"], "${DS_PROMETHEUS}", panel["title"])
                self.assertTrue(panel["targets"], panel["title"])
                for target in panel["targets"]:
                    self.assertEqual(target["datasource"]["uid"], "${DS_PROMETHEUS}",
                                     panel["title"])

        walk(dashboard["panels"])

    def test_alert_rules_name_exported_metrics(self) -> None:
        rules = opslib.alert_expressions()
        self.assertEqual({name for name, _ in rules},
                         {"KvtierDown", "KvtierRepairSlow", "KvtierTierNearCapacity",
                          "KvtierResourceExhausted", "KvtierDataLoss"})
        for name, expr in rules:
            self.check_expression(f"alert {name}", expr)

    def test_name_extraction_sees_through_promql(self) -> None:
        # The checks above are only as good as this extraction.
        expr = ('histogram_quantile(0.95, sum by (method, le) (rate(kvtier_a_bucket'
                '{instance=~"$instance", code!="OK"}[$__rate_interval]))) / on (job) '
                'group_left kvtier_b > 1e-3 and time() - kvtier_c offset 5m')
        self.assertEqual(opslib.promql_metric_names(expr), {"kvtier_a_bucket", "kvtier_b",
                                                            "kvtier_c"})
        self.assertEqual(opslib.promql_matchers(expr),
                         [("kvtier_a_bucket", {"instance", "code"})])
        self.assertIsNone(opslib.resolve_series_name("kvtier_sessions_count", self.families))
        self.assertIs(opslib.resolve_series_name("kvtier_rpc_duration_seconds_bucket",
                                                 self.families),
                      self.families["kvtier_rpc_duration_seconds"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
