"""deploy/helm/kvtier: rendered with Helm's own engine (helm-python-sdk binds Helm's Go
SDK; no cluster, no helm binary), linted, and every render passes the same checks as
deploy/kubernetes (schemas, native sidecar, probes, memory from the flags, selectors)."""

import re

import pytest
import yaml

import deploy_common as dc

VALUE_SETS = {
    "defaults": None,
    "daemonset": {"mode": "daemonset"},
    "tuned": {
        "kvtierd": {
            "hostCapacityBytes": 68719476736, "diskCapacityBytes": 549755813888,
            "placementPolicy": "regret_aware", "durability": "sync", "coldFormat": "int8",
            "maxRequestBytes": 134217728, "blockCacheBytes": 134217728,
            "sessions": {"maxSessions": 100, "defaultTtlSeconds": 60, "maxTtlSeconds": 600,
                         "tenantQuotaBytes": 1073741824, "tenantQuotas": "a=1024,b=2048"},
            "extraArgs": ["--trace_file=/var/lib/kvtier/trace.bin"],
        },
        "metrics": {"serviceMonitor": {"labels": {"release": "prometheus"}}},
    },
    "daemonset-bare": {"mode": "daemonset", "networkPolicy": {"enabled": False},
                       "metrics": {"serviceMonitor": {"enabled": False}}},
}


@pytest.mark.parametrize("name", VALUE_SETS)
def test_render_passes_every_check(name):
    objects = dc.rendered_objects(VALUE_SETS[name])
    problems = dc.check_objects(objects)
    assert not problems, "\n".join(problems)
    kinds = sorted(o["kind"] for _, o in objects)
    workload = "DaemonSet" if "daemonset" in name else "Deployment"
    extra = [] if name == "daemonset-bare" else ["NetworkPolicy", "ServiceMonitor"]
    assert kinds == sorted([workload, "Service"] + extra)


def _kvtierd(values):
    objects = dc.rendered_objects(values)
    workload = next(o for _, o in objects if o["kind"] in ("Deployment", "DaemonSet"))
    return next(c for c in dc.all_containers(dc.pod_spec(workload)) if dc.is_kvtierd(c))


def test_values_become_kvtierd_flags():
    flags = dc.flag_map(dc.kvtierd_args(_kvtierd(VALUE_SETS["tuned"])))
    assert flags["host_capacity_bytes"] == "68719476736"
    assert flags["disk_capacity_bytes"] == "549755813888"
    assert flags["placement_policy"] == "regret_aware"
    assert flags["durability"] == "sync"
    assert flags["cold_format"] == "int8"
    assert flags["max_sessions"] == "100"
    assert flags["default_ttl_seconds"] == "60"
    assert flags["max_ttl_seconds"] == "600"
    assert flags["tenant_quota_bytes"] == "1073741824"
    assert flags["tenant_quotas"] == "a=1024,b=2048"
    assert flags["trace_file"] == "/var/lib/kvtier/trace.bin"
    assert flags["listen"] == ""


def test_memory_request_follows_the_host_capacity():
    c = _kvtierd(VALUE_SETS["tuned"])
    # 64 GiB + 192 MiB memtables + 128 MiB block cache + 2 x 128 MiB requests + 256 MiB.
    assert c["resources"]["requests"]["memory"] == str(68719476736 + (192 + 128 + 256 + 256)
                                                       * dc.MIB)


def test_sidecar_data_volume_is_the_disk_tier_plus_a_quarter():
    objects = dc.rendered_objects(None)
    deployment = next(o for _, o in objects if o["kind"] == "Deployment")
    volumes = {v["name"]: v for v in dc.pod_spec(deployment)["volumes"]}
    assert volumes["kvtier-data"]["emptyDir"]["sizeLimit"] == str(137438953472 * 5 // 4)


@pytest.mark.parametrize("key", ["auth", "tls"])
def test_auth_and_tls_fail_with_a_clear_message(key):
    import helm_python as helm

    with pytest.raises(helm.HelmRenderError, match=r"no (token auth|TLS) yet \(issue 7\)"):
        dc.render_chart({key: {"enabled": True}})


def test_values_schema_rejects_unknown_policies():
    import helm_python as helm

    with pytest.raises(helm.HelmValuesError, match="placementPolicy"):
        dc.render_chart({"kvtierd": {"placementPolicy": "fifo"}})
    with pytest.raises(helm.HelmValuesError, match="mode"):
        dc.render_chart({"mode": "sidecars"})


def test_lint_reports_no_error_or_warning():
    import helm_python as helm

    report = helm.lint(str(dc.CHART_DIR), strict=True, kube_version="v1.29.0")
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not serious, report


def test_chart_metadata():
    chart = yaml.safe_load((dc.CHART_DIR / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "kvtier"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    assert chart["kubeVersion"].startswith(">=1.29")


def test_templates_reference_only_defined_values():
    """Helm renders a missing value as empty: every .Values path must exist in values.yaml."""
    values = yaml.safe_load((dc.CHART_DIR / "values.yaml").read_text())
    missing = []
    for template in sorted((dc.CHART_DIR / "templates").iterdir()):
        for ref in re.findall(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", template.read_text()):
            node = values
            for key in ref.strip(".").split("."):
                if not isinstance(node, dict) or key not in node:
                    missing.append(f"{template.name}: .Values{ref}")
                    break
                node = node[key]
    assert not missing, "\n".join(missing)
