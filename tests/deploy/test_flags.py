"""Every kvtierd command line in deploy/ and docker/ (the Kubernetes manifests, the Helm
chart's renders, compose.yaml, the Dockerfiles' CMD) names only flags that
`kvtierd --helpfull` lists, and starts the real kvtierd (KVTIERD, the build's binary) with
paths moved under a temp dir and ports set to 0: it must get ready, answer
`kvtierctl health` on its socket, and exit 0 on SIGTERM. The kvtierctl commands of the
probes and health checks use only flags `kvtierctl --helpfull` lists."""

import json
import os
import pathlib
import re
import signal
import subprocess
import tempfile
import time

import pytest
import yaml

import deploy_common as dc
from test_docker import DOCKERFILES, stages
from test_helm import VALUE_SETS

KVTIERD = os.environ["KVTIERD"]
KVTIERCTL = os.environ["KVTIERCTL"]
READY_DEADLINE_S = 120  # generous: the sanitizer build starts slowly on a loaded machine


def command_lines():
    """(origin, kvtierd args, kvtierctl commands) from every deployment file."""
    lines = []
    sources = [(o, obj) for o, obj in dc.kubernetes_objects()]
    for name, values in VALUE_SETS.items():
        sources += [(f"helm {name}: {o}", obj) for o, obj in dc.rendered_objects(values)]
    for origin, obj in sources:
        spec = dc.pod_spec(obj)
        if spec is None:
            continue
        for c in dc.all_containers(spec):
            if not dc.is_kvtierd(c):
                continue
            ctl = [p["exec"]["command"] for _, p in dc.probe_commands(c) if "exec" in p]
            lines.append((f"{origin}: {c['name']}", dc.kvtierd_args(c), ctl))
    compose = yaml.safe_load((dc.DOCKER_DIR / "compose.yaml").read_text())
    lines.append(("compose.yaml: kvtierd", compose["services"]["kvtierd"]["command"], []))
    for path in DOCKERFILES:
        final = stages(path)[-1]
        cmd = [json.loads(rest) for word, rest in final if word == "CMD"][-1]
        health = [rest for word, rest in final if word == "HEALTHCHECK"][0]
        ctl = [json.loads(health[health.index("CMD") + 3:].strip())]
        lines.append((f"{path.name}: CMD", cmd, ctl))
    return lines


LINES = command_lines()


def test_every_deployment_file_contributes():
    origins = " ".join(o for o, _, _ in LINES)
    for name in ("vllm-kvtier-sidecar.yaml", "kvtierd-daemonset.yaml", "helm defaults",
                 "helm daemonset", "compose.yaml", "Dockerfile: CMD", "Dockerfile.cuda: CMD"):
        assert name in origins, f"no kvtierd command line found in {name}"


def test_kvtierd_flags_exist():
    known = dc.helpfull_flags(KVTIERD)
    unknown = [f"{origin}: --{flag}" for origin, args, _ in LINES
               for flag in dc.flag_map(args) if flag not in known]
    assert not unknown, "flags kvtierd does not define:\n" + "\n".join(unknown)


def test_kvtierctl_commands_exist():
    known = dc.helpfull_flags(KVTIERCTL)
    usage = subprocess.run([KVTIERCTL, "--help"], capture_output=True, text=True, timeout=60)
    commands = set(re.findall(r"^\s+([a-z-]+)\s", usage.stdout + usage.stderr, re.M))
    problems = []
    for origin, _, ctl in LINES:
        for cmd in ctl:
            if cmd[0] != "kvtierctl" or cmd[1] not in commands:
                problems.append(f"{origin}: {cmd}")
            problems += [f"{origin}: {a}" for a in cmd[2:]
                         if not a.startswith("--") or a[2:].split("=")[0] not in known]
    assert not problems, "\n".join(problems)


def _local_args(args, root):
    """The same flags with absolute paths under root and listeners on loopback port 0."""
    out = []
    for flag, value in dc.flag_map(args).items():
        if flag in ("listen", "metrics_listen") and value:
            value = "127.0.0.1:0"
        elif value.startswith("/"):
            value = str(root) + value
        out.append(f"--{flag}={value}")
    return out


def _distinct_lines():
    seen, result = set(), []
    for origin, args, _ in LINES:
        key = tuple(sorted(_local_args(args, pathlib.Path("/R"))))
        if key not in seen:
            seen.add(key)
            result.append((origin, args))
    return result


@pytest.mark.parametrize("origin,args", _distinct_lines(), ids=[o for o, _ in _distinct_lines()])
def test_kvtierd_starts_with_the_deployed_flags(origin, args):
    with tempfile.TemporaryDirectory() as d:
        root = pathlib.Path(d)
        local = _local_args(args, root)
        ready = root / "ready.json"
        log = open(root / "kvtierd.log", "w+")
        # The images start kvtierd under umask 0007 (docker/kvtierd-entrypoint.sh).
        proc = subprocess.Popen([KVTIERD, *local, f"--ready_file={ready}"], stdout=log,
                                stderr=subprocess.STDOUT, preexec_fn=lambda: os.umask(0o007))
        try:
            deadline = time.monotonic() + READY_DEADLINE_S
            while not ready.exists():
                assert proc.poll() is None, f"{origin}: kvtierd exited {proc.returncode}"
                assert time.monotonic() < deadline, f"{origin}: kvtierd not ready"
                time.sleep(0.05)
            socket = json.loads(ready.read_text())["unix_socket"]
            assert socket == str(root) + dc.flag_map(args)["unix_socket"]
            # The socket is group-writable, so engines in kvtierd's group can connect.
            assert os.stat(socket).st_mode & 0o060 == 0o060, oct(os.stat(socket).st_mode)
            health = subprocess.run([KVTIERCTL, "health", f"--server=unix://{socket}"],
                                    capture_output=True, text=True, timeout=60)
            assert health.returncode == 0, health.stdout + health.stderr
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, f"{origin}: exit status {proc.returncode}"
        except BaseException:
            log.seek(0)
            print(log.read())
            raise
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
