"""kvtier.testing.Daemon: the fixture the other tests (and other suites) rely on."""

import json
import os
import socket
import sys
import subprocess

import pytest

import kvtier.testing


def test_daemon_reports_its_listeners_and_stops_cleanly():
    d = kvtier.testing.Daemon()
    try:
        assert d.unix_target == "unix://" + os.path.join(d.dir, "kvtierd.sock")
        assert os.path.isabs(d.dir)
        with open(os.path.join(d.dir, "ready.json")) as f:
            ready = json.load(f)
        assert ready["pid"] == d.pid
        assert d.tcp_target == f"127.0.0.1:{ready['tcp_port']}"
        assert d.metrics_port == ready["metrics_port"] > 0
        # Both TCP listeners accept connections.
        for port in (d.tcp_port, d.metrics_port):
            socket.create_connection(("127.0.0.1", port), timeout=10).close()
        assert "kvtierd" in d.log_tail()
        assert len(d.log_tail(10)) <= 10
        assert d.stop() == 0
        assert d.stop() == 0  # the same answer again
        assert not d.running
    finally:
        d.close()
    assert not os.path.exists(d.dir)


def test_daemon_that_exits_first_raises_with_its_log():
    with pytest.raises(kvtier.testing.DaemonError) as e:
        kvtier.testing.Daemon(extra_flags=["--segment_rows=7"], timeout=30)
    assert "exited with" in str(e.value)
    assert "segment_rows" in str(e.value)  # the log's tail names the bad flag


def test_missing_binary_is_reported():
    with pytest.raises(kvtier.testing.DaemonError, match="not an executable"):
        kvtier.testing.Daemon(kvtierd="/nonexistent/kvtierd")


def test_kill_and_restart_in_the_same_dir():
    with kvtier.testing.Daemon() as d:
        first_pid = d.pid
        assert d.kill() == 137
        d.restart()
        assert d.pid != first_pid and d.running
        socket.create_connection(("127.0.0.1", d.tcp_port), timeout=10).close()


def test_testing_imports_without_numpy_or_grpc():
    # kvtier.testing is standard library only: it must import where numpy and grpc do not.
    code = ("import sys; sys.modules['numpy'] = None; sys.modules['grpc'] = None\n"
            "import kvtier.testing; print(kvtier.testing.Daemon.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd="/", check=True)
    assert out.stdout.strip() == "Daemon"


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError])
def test_daemon_is_killed_when_the_startup_wait_fails(monkeypatch, failure):
    # Something outside Daemon's own checks stops the wait for the ready file (Ctrl-C, an
    # OSError reading it): the child must not be left running.
    started = []

    class RecordingPopen(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    real_open = open

    def failing_open(path, *args, **kwargs):
        if str(path).endswith("ready.json"):
            raise failure("injected")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(kvtier.testing.subprocess, "Popen", RecordingPopen)
    monkeypatch.setattr(kvtier.testing, "open", failing_open, raising=False)
    # The failed constructor itself must stop the child, not Daemon.__del__'s last resort
    # (which runs only once nothing, e.g. a kept traceback, holds the object).
    monkeypatch.setattr(kvtier.testing.Daemon, "__del__", lambda self: None)
    try:
        with pytest.raises(failure, match="injected"):
            kvtier.testing.Daemon(timeout=60)
        assert len(started) == 1
        # Killed and reaped (returncode set by wait: SIGKILL), not left running.
        assert started[0].returncode == -9, started[0].poll()
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
