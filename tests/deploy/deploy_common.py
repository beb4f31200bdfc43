"""Shared helpers of the deployment checks in tests/deploy (see CMakeLists.txt there).

Loads the Kubernetes manifests and the Helm chart's renders, finds the kvtierd and
kvtierctl command lines in them, and checks Kubernetes objects: against the real
Kubernetes JSON schemas (kubernetes-validate, offline) where one exists, and by the
checks below for everything (ServiceMonitor included, which has no bundled schema).
"""

import os
import pathlib
import re
import subprocess

import yaml

SOURCE_DIR = pathlib.Path(
    os.environ.get("KVTIER_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
KUBERNETES_DIR = SOURCE_DIR / "deploy" / "kubernetes"
CHART_DIR = SOURCE_DIR / "deploy" / "helm" / "kvtier"
DOCKER_DIR = SOURCE_DIR / "docker"

# The oldest Kubernetes the manifests support (native sidecars are on by default from
# 1.29) and the newest whose schemas kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.29.0", "latest")

SOCKET_DIR = "/var/run/kvtier"
KVTIER_GID = 10001
MIB = 1 << 20
# What kvtierd holds beside --host_capacity_bytes (the arithmetic in the manifests'
# comments): RocksDB memtables 3 x 64 MiB, the block cache, two largest requests in
# flight, 256 MiB of process slack.
MEMTABLE_BYTES = 3 * 64 * MIB
SLACK_BYTES = 256 * MIB
DEFAULT_BLOCK_CACHE_BYTES = 64 * MIB
DEFAULT_MAX_REQUEST_BYTES = 256 * MIB

POD_KINDS = {"Pod", "Deployment", "DaemonSet", "StatefulSet", "Job"}


def kubernetes_files():
    return sorted(KUBERNETES_DIR.glob("*.yaml"))


def load_documents(text, origin):
    """Parses a multi-document YAML text; drops empty documents; each must be a mapping."""
    docs = []
    for doc in yaml.safe_load_all(text):
        if doc is None:
            continue
        assert isinstance(doc, dict), f"{origin}: a document is not a mapping: {doc!r}"
        docs.append(doc)
    return docs


def kubernetes_objects():
    """(origin, object) for every object in deploy/kubernetes/*.yaml."""
    objects = []
    for path in kubernetes_files():
        for doc in load_documents(path.read_text(), path.name):
            objects.append((path.name, doc))
    return objects


def render_chart(values=None, name="kv", namespace="kvtier"):
    """Renders deploy/helm/kvtier with Helm's own engine (helm-python-sdk wraps Helm's Go
    SDK as a C library: no cluster, no helm binary). Returns {template path: text}."""
    import helm_python as helm

    chart = helm.Chart.load(str(CHART_DIR))
    return chart.render(values, name=name, namespace=namespace)


def rendered_objects(values=None):
    objects = []
    for path, text in sorted(render_chart(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in load_documents(text, path):
            objects.append((path, doc))
    return objects


def pod_spec(obj):
    if obj["kind"] == "Pod":
        return obj["spec"]
    if obj["kind"] in POD_KINDS:
        return obj["spec"]["template"]["spec"]
    return None


def all_containers(spec):
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def is_kvtierd(container):
    """A container running kvtierd: the kvtier image with its entry point (no command)."""
    return "kvtier" in container.get("image", "") and "command" not in container


def kvtierd_args(container):
    return [str(a) for a in container.get("args") or []]


def flag_map(args):
    """{name: value} of --name=value arguments."""
    flags = {}
    for arg in args:
        m = re.fullmatch(r"--([A-Za-z0-9_]+)(?:=(.*))?", arg, re.S)
        assert m, f"not a --flag=value argument: {arg!r}"
        flags[m.group(1)] = m.group(2) if m.group(2) is not None else "true"
    return flags


def probe_commands(container):
    cmds = []
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if probe in container:
            cmds.append((probe, container[probe]))
    return cmds


def helpfull_flags(binary):
    """The flag names `binary --helpfull` lists."""
    out = subprocess.run([binary, "--helpfull"], capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    flags = set(re.findall(r"^\s+--([A-Za-z0-9_]+) \(", text, re.M))
    assert len(flags) > 5, f"{binary} --helpfull listed no flags:\n{text}"
    return flags


_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$")
_FACTORS = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
            "Pi": 1 << 50, "Ei": 1 << 60, "k": 10**3, "M": 10**6, "G": 10**9,
            "T": 10**12, "P": 10**15, "E": 10**18, "m": 0.001}


def quantity_bytes(value):
    m = _QUANTITY.match(str(value))
    assert m, f"not a Kubernetes quantity: {value!r}"
    return float(m.group(1)) * _FACTORS[m.group(2)]


_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h))+$")


def schema_problems(origin, obj):
    """Validates one object against the Kubernetes JSON schemas kubernetes-validate ships
    (strict: unknown fields are errors). Returns problems; CRDs it has no schema for are
    left to the checks of their own (ServiceMonitor)."""
    import kubernetes_validate

    problems = []
    for version in KUBERNETES_VERSIONS:
        v = kubernetes_validate.latest_version() if version == "latest" else version
        try:
            kubernetes_validate.validate(obj, v, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            if not obj.get("apiVersion", "").startswith("monitoring.coreos.com/"):
                problems.append(f"{origin}: no Kubernetes {v} schema for "
                                f"{obj.get('apiVersion')} {obj.get('kind')}")
        except kubernetes_validate.ValidationError as e:
            where = "/".join(str(p) for p in e.path)
            problems.append(f"{origin}: {obj['kind']} {obj['metadata'].get('name')}: "
                            f"Kubernetes {v} schema: at {where}: {e.message[:300]}")
    return problems


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _namespace(obj):
    return obj.get("metadata", {}).get("namespace")


def check_objects(objects):
    """Every check of this module over a set of objects (a file, or one render of the
    chart). Returns a list of problems, empty when all pass."""
    problems = []
    pods = []  # (origin, obj, labels, spec)
    services = []
    for origin, obj in objects:
        where = f"{origin}: {obj.get('kind')} {obj.get('metadata', {}).get('name')}"
        for field in ("apiVersion", "kind", "metadata"):
            if not obj.get(field):
                problems.append(f"{where}: no {field}")
        name = obj.get("metadata", {}).get("name", "")
        if not _DNS_NAME.match(name) or len(name) > 63:
            problems.append(f"{where}: metadata.name {name!r} is not a DNS-1123 name")
        problems += schema_problems(origin, obj)
        spec = pod_spec(obj)
        if spec is not None:
            labels = (obj["metadata"].get("labels") if obj["kind"] == "Pod" else
                      obj["spec"]["template"]["metadata"].get("labels")) or {}
            if obj["kind"] != "Pod":
                selector = obj["spec"]["selector"].get("matchLabels", {})
                if not labels_match(selector, labels):
                    problems.append(f"{where}: selector {selector} does not match the "
                                    f"template's labels {labels}")
            pods.append((origin, obj, labels, spec))
            problems += check_pod(where, obj, spec)
        if obj.get("kind") == "Service":
            services.append(obj)
    for obj in services:
        where = f"Service {obj['metadata']['name']}"
        selected = [p for p in pods if _namespace(p[1]) == _namespace(obj)
                    and labels_match(obj["spec"].get("selector"), p[2])]
        if not selected:
            problems.append(f"{where}: its selector matches no pod template")
        for port in obj["spec"]["ports"]:
            target = port.get("targetPort")
            if isinstance(target, str) and not any(
                    target in [cp.get("name") for c in all_containers(p[3])
                               for cp in c.get("ports") or []] for p in selected):
                problems.append(f"{where}: targetPort {target!r} is no container port")
    for origin, obj in objects:
        if obj.get("kind") == "ServiceMonitor":
            problems += check_service_monitor(origin, obj, services)
        if obj.get("kind") == "NetworkPolicy":
            selector = obj["spec"]["podSelector"].get("matchLabels", {})
            if not any(_namespace(p[1]) == _namespace(obj) and labels_match(selector, p[2])
                       for p in pods):
                problems.append(f"{origin}: NetworkPolicy {obj['metadata']['name']} "
                                "selects no pod")
    return problems


def check_service_monitor(origin, obj, services):
    """monitoring.coreos.com/v1 ServiceMonitor: no schema is bundled, so the fields the
    Prometheus Operator needs are checked here, and that it selects a Service's port."""
    where = f"{origin}: ServiceMonitor {obj['metadata'].get('name')}"
    problems = []
    if obj.get("apiVersion") != "monitoring.coreos.com/v1":
        problems.append(f"{where}: apiVersion {obj.get('apiVersion')!r}")
    spec = obj.get("spec") or {}
    unknown = set(spec) - {"selector", "endpoints", "namespaceSelector", "jobLabel",
                           "targetLabels", "podTargetLabels", "sampleLimit"}
    if unknown:
        problems.append(f"{where}: unknown spec fields {sorted(unknown)}")
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    matched = [s for s in services if _namespace(s) == _namespace(obj)
               and labels_match(selector, s["metadata"].get("labels") or {})]
    if not matched:
        problems.append(f"{where}: selector {selector} matches no Service's labels")
    endpoints = spec.get("endpoints") or []
    if not endpoints:
        problems.append(f"{where}: no endpoints")
    for ep in endpoints:
        unknown = set(ep) - {"port", "path", "interval", "scrapeTimeout", "scheme",
                             "honorLabels", "relabelings", "metricRelabelings"}
        if unknown:
            problems.append(f"{where}: unknown endpoint fields {sorted(unknown)}")
        if not any(ep.get("port") in [p.get("name") for p in s["spec"]["ports"]]
                   for s in matched):
            problems.append(f"{where}: endpoint port {ep.get('port')!r} is no named port "
                            "of the selected Service")
        if not str(ep.get("path", "/metrics")).startswith("/"):
            problems.append(f"{where}: path {ep.get('path')!r}")
        if "interval" in ep and not _DURATION.match(str(ep["interval"])):
            problems.append(f"{where}: interval {ep['interval']!r} is not a duration")
    return problems


def expected_memory_bytes(flags):
    return (int(flags["host_capacity_bytes"]) + MEMTABLE_BYTES
            + int(flags.get("block_cache_bytes", DEFAULT_BLOCK_CACHE_BYTES))
            + 2 * int(flags.get("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES))
            + SLACK_BYTES)


def check_pod(where, obj, spec):
    problems = []
    containers = all_containers(spec)
    if not spec.get("containers"):
        problems.append(f"{where}: no containers")
    names = [c.get("name") for c in containers]
    if len(names) != len(set(names)):
        problems.append(f"{where}: container names repeat: {names}")
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for c in containers:
        if not c.get("name") or not c.get("image"):
            problems.append(f"{where}: a container without name or image: {c}")
        for m in c.get("volumeMounts") or []:
            if m["name"] not in volumes:
                problems.append(f"{where}: {c['name']} mounts undefined volume {m['name']}")
    kvtierds = [c for c in containers if is_kvtierd(c)]
    for c in kvtierds:
        problems += check_kvtierd_container(f"{where}: {c['name']}", obj, spec, c, volumes)
    sidecars = [c for c in spec.get("initContainers") or [] if is_kvtierd(c)]
    if sidecars:
        socket = flag_map(kvtierd_args(sidecars[0])).get("unix_socket", "")
        socket_mount = [m for m in sidecars[0].get("volumeMounts") or []
                        if socket.startswith(m["mountPath"] + "/")]
        for c in spec.get("containers") or []:
            shared = [m for m in c.get("volumeMounts") or []
                      if socket_mount and m["name"] == socket_mount[0]["name"]]
            if not shared:
                problems.append(f"{where}: engine container {c['name']} does not mount "
                                "kvtierd's socket volume")
            elif shared[0]["mountPath"] != socket_mount[0]["mountPath"]:
                problems.append(f"{where}: {c['name']} mounts the socket volume elsewhere")
            env = {e["name"]: e.get("value") for e in c.get("env") or []}
            if env.get("KVTIER_SERVER") != f"unix://{socket}":
                problems.append(f"{where}: {c['name']} KVTIER_SERVER is "
                                f"{env.get('KVTIER_SERVER')!r}, not unix://{socket}")
        if (spec.get("securityContext") or {}).get("fsGroup") != KVTIER_GID:
            problems.append(f"{where}: the pod's fsGroup is not {KVTIER_GID}, so a non-root "
                            "engine cannot use kvtierd's socket")
        if socket_mount and "emptyDir" not in volumes.get(socket_mount[0]["name"], {}):
            problems.append(f"{where}: the socket volume is not an emptyDir")
    if obj["kind"] == "DaemonSet" and kvtierds:
        if not spec.get("nodeSelector"):
            problems.append(f"{where}: a DaemonSet of kvtierd without a nodeSelector")
        if not any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations") or []):
            problems.append(f"{where}: does not tolerate the nvidia.com/gpu taint")
        for c in kvtierds:
            for m in c.get("volumeMounts") or []:
                if "hostPath" not in volumes[m["name"]]:
                    problems.append(f"{where}: {m['mountPath']} is not a hostPath")
    return problems


def check_kvtierd_container(where, obj, spec, c, volumes):
    problems = []
    flags = flag_map(kvtierd_args(c))
    for required in ("unix_socket", "data_dir", "host_capacity_bytes", "metrics_listen",
                     "listen"):
        if required not in flags:
            problems.append(f"{where}: no --{required} (the image's defaults do not apply "
                            "once args are given)")
    if problems:
        return problems
    socket = flags["unix_socket"]
    if not socket.startswith(SOCKET_DIR + "/"):
        problems.append(f"{where}: --unix_socket {socket} is not under {SOCKET_DIR}")
    if flags["listen"] and not flags["listen"].startswith("127.0.0.1:"):
        problems.append(f"{where}: --listen={flags['listen']}: kvtierd has no TLS or auth "
                        "yet (issue 7); keep the gRPC API on the Unix socket")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
    for path, what in ((socket.rsplit("/", 1)[0], "socket directory"),
                       (flags["data_dir"], "--data_dir")):
        if path not in mounts:
            problems.append(f"{where}: the {what} {path} is not a mounted volume")
    metrics_port = int(flags["metrics_listen"].rsplit(":", 1)[1])
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
    if ports.get("metrics") != metrics_port:
        problems.append(f"{where}: container port 'metrics' {ports.get('metrics')} is not "
                        f"--metrics_listen's {metrics_port}")
    health = ["kvtierctl", "health", f"--server=unix://{socket}"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        command = ((c.get(probe) or {}).get("exec") or {}).get("command")
        if command != health:
            problems.append(f"{where}: {probe} is {command}, not {health}")
    resources = c.get("resources") or {}
    request = (resources.get("requests") or {}).get("memory")
    limit = (resources.get("limits") or {}).get("memory")
    expected = expected_memory_bytes(flags)
    if request is None or quantity_bytes(request) != expected:
        problems.append(f"{where}: memory request {request} is not --host_capacity_bytes + "
                        f"the stated overhead = {expected} bytes ({expected / MIB:.0f} MiB)")
    if limit != request:
        problems.append(f"{where}: memory limit {limit} differs from the request {request}")
    sc = c.get("securityContext") or {}
    if not sc.get("runAsNonRoot") or not sc.get("runAsUser"):
        problems.append(f"{where}: does not run as a non-root user")
    if c in (spec.get("initContainers") or []) and c.get("restartPolicy") != "Always":
        problems.append(f"{where}: an init container without restartPolicy: Always is "
                        "no native sidecar")
    if obj["kind"] in ("Deployment", "Pod") and c in (spec.get("containers") or []):
        problems.append(f"{where}: next to an engine kvtierd belongs in initContainers "
                        "(native sidecar)")
    return problems
