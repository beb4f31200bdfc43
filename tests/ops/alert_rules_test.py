"""Checks that deploy/prometheus/alerts_test.yml really tests deploy/prometheus/alerts.yml.

`promtool test rules` passing proves little if a test case could pass without its rule. So:
every alert has a case where it fires and a case where it stays silent; every alert has a
severity, a summary and a description; and for each alert, a copy of alerts.yml with that
rule removed must make `promtool test rules` fail (and the unchanged copy must pass).
$PROMTOOL names promtool (default /usr/bin/promtool).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import unittest

import yaml  # PyYAML (scripts/requirements-test.txt)

import opslib

PROMTOOL = os.environ.get("PROMTOOL", "/usr/bin/promtool")
RULES_DIR = os.path.dirname(opslib.ALERTS)
TESTS = os.path.join(RULES_DIR, "alerts_test.yml")


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


class AlertRulesTest(unittest.TestCase):
    def setUp(self) -> None:
        self.rules = load(opslib.ALERTS)
        self.alerts = [r for g in self.rules["groups"] for r in g["rules"] if "alert" in r]
        self.tests = load(TESTS)
        self.tmp = tempfile.mkdtemp(prefix="kvtier-alerts-")

    def tearDown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def promtool_test(self, rules: dict) -> subprocess.CompletedProcess:
        with open(os.path.join(self.tmp, "alerts.yml"), "w", encoding="utf-8") as f:
            yaml.safe_dump(rules, f, sort_keys=False)
        shutil.copy(TESTS, os.path.join(self.tmp, "alerts_test.yml"))
        return subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=self.tmp,
                              capture_output=True, text=True, timeout=120, check=False)

    def test_every_alert_is_labelled_and_annotated(self) -> None:
        self.assertGreaterEqual(len(self.alerts), 5)
        for rule in self.alerts:
            self.assertIn(rule["labels"]["severity"], ("critical", "warning"), rule["alert"])
            self.assertTrue(rule["annotations"]["summary"], rule["alert"])
            self.assertTrue(rule["annotations"]["description"], rule["alert"])

    def test_every_alert_has_a_firing_and_a_silent_case(self) -> None:
        fires, silent = set(), set()
        for case in self.tests["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
        names = {rule["alert"] for rule in self.alerts}
        self.assertEqual(names - fires, set(), "alerts never expected to fire")
        self.assertEqual(names - silent, set(), "alerts never expected to stay silent")

    def test_the_cases_fail_without_their_rule(self) -> None:
        unchanged = self.promtool_test(self.rules)
        self.assertEqual(unchanged.returncode, 0, unchanged.stdout + unchanged.stderr)
        for rule in self.alerts:
            with self.subTest(alert=rule["alert"]):
                mutated = {"groups": [
                    dict(g, rules=[r for r in g["rules"] if r is not rule])
                    for g in self.rules["groups"]]}
                result = self.promtool_test(mutated)
                self.assertNotEqual(result.returncode, 0,
                                    f"alerts_test.yml passes without {rule['alert']}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
