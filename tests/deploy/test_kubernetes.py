"""deploy/kubernetes: every manifest parses, passes the Kubernetes 1.29 and latest JSON
schemas (strict), and the checks of deploy_common (native sidecar, socket volume, probes,
memory sized from the flags, Service/ServiceMonitor/NetworkPolicy selecting the pods)."""

import copy

import pytest

import deploy_common as dc


@pytest.mark.parametrize("path", dc.kubernetes_files(), ids=lambda p: p.name)
def test_manifest_passes_every_check(path):
    objects = [(path.name, o) for o in dc.load_documents(path.read_text(), path.name)]
    assert objects, f"{path.name} holds no object"
    problems = dc.check_objects(objects)
    assert not problems, "\n".join(problems)


def test_the_expected_files_and_objects_exist():
    kinds = {}
    for origin, obj in dc.kubernetes_objects():
        kinds.setdefault(origin, []).append(obj["kind"])
    assert sorted(kinds["vllm-kvtier-sidecar.yaml"]) == [
        "Deployment", "NetworkPolicy", "Service", "ServiceMonitor"]
    assert sorted(kinds["kvtierd-daemonset.yaml"]) == [
        "DaemonSet", "Namespace", "NetworkPolicy", "Service", "ServiceMonitor"]
    assert kinds["engine-on-gpu-node.yaml"] == ["Deployment"]


def _objects(name):
    path = dc.KUBERNETES_DIR / name
    return [(name, o) for o in dc.load_documents(path.read_text(), name)]


def test_engine_on_gpu_node_uses_the_daemonsets_socket():
    daemonset = next(o for _, o in _objects("kvtierd-daemonset.yaml") if o["kind"] == "DaemonSet")
    engine = next(o for _, o in _objects("engine-on-gpu-node.yaml"))
    ds_spec, engine_spec = dc.pod_spec(daemonset), dc.pod_spec(engine)
    kvtierd = next(c for c in ds_spec["containers"] if dc.is_kvtierd(c))
    socket = dc.flag_map(dc.kvtierd_args(kvtierd))["unix_socket"]
    ds_volumes = {v["name"]: v for v in ds_spec["volumes"]}
    socket_volume = next(ds_volumes[m["name"]] for m in kvtierd["volumeMounts"]
                         if socket.startswith(m["mountPath"] + "/"))
    engine_volumes = {v["name"]: v for v in engine_spec["volumes"]}
    vllm = engine_spec["containers"][0]
    mount = next(m for m in vllm["volumeMounts"]
                 if engine_volumes[m["name"]].get("hostPath", {}).get("path")
                 == socket_volume["hostPath"]["path"])
    assert socket.startswith(mount["mountPath"] + "/")
    assert dc.KVTIER_GID in engine_spec["securityContext"]["supplementalGroups"]
    assert engine_spec["nodeSelector"] == ds_spec["nodeSelector"]
    env = {e["name"]: e["value"] for e in vllm["env"]}
    assert env["KVTIER_SERVER"] == f"unix://{socket}"


def _sidecar_deployment():
    objects = _objects("vllm-kvtier-sidecar.yaml")
    return objects, next(o for _, o in objects if o["kind"] == "Deployment")


# The checks must bite: each breaks the sidecar manifest one way and expects a problem.
def _break(mutate):
    objects, deployment = _sidecar_deployment()
    broken = copy.deepcopy(deployment)
    mutate(dc.pod_spec(broken))
    return dc.check_objects([(o, broken if x is deployment else x) for o, x in objects])


def test_checks_catch_a_sidecar_without_restart_policy():
    problems = _break(lambda s: s["initContainers"][0].pop("restartPolicy"))
    assert any("native sidecar" in p for p in problems), problems


def test_checks_catch_memory_not_sized_from_the_flags():
    def grow(spec):
        args = spec["initContainers"][0]["args"]
        i = next(i for i, a in enumerate(args) if a.startswith("--host_capacity_bytes="))
        args[i] = "--host_capacity_bytes=34359738368"
    problems = _break(grow)
    assert any("memory request" in p for p in problems), problems


def test_checks_catch_an_unknown_field_through_the_schema():
    problems = _break(lambda s: s["initContainers"][0].update(restartPolicyy="Always"))
    assert any("schema" in p and "restartPolicyy" in p for p in problems), problems


def test_checks_catch_a_tcp_listener_and_a_probe_on_another_socket():
    def tcp(spec):
        c = spec["initContainers"][0]
        c["args"] = [a if not a.startswith("--listen=") else "--listen=0.0.0.0:50551"
                     for a in c["args"]]
        c["livenessProbe"]["exec"]["command"][2] = "--server=unix:///tmp/other.sock"
    problems = _break(tcp)
    assert any("issue 7" in p for p in problems), problems
    assert any("livenessProbe" in p for p in problems), problems


def test_checks_catch_a_service_monitor_on_a_missing_port():
    objects, _ = _sidecar_deployment()
    broken = copy.deepcopy(objects)
    monitor = next(o for _, o in broken if o["kind"] == "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["port"] = "metricz"
    problems = dc.check_objects(broken)
    assert any("metricz" in p for p in problems), problems
