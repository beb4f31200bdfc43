"""Starts the real kvtierd for tests and examples.

Standard library only, so that ``import kvtier.testing`` works even where numpy or grpc do
not import. The Python twin of tests/daemon_harness.h::

    with kvtier.testing.Daemon() as d:          # kvtierd from $KVTIERD
        client = kvtier.Client(d.unix_target)
        ...

The daemon runs in a fresh temporary directory DIR with
``--unix_socket=DIR/kvtierd.sock --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0
--data_dir=DIR/data --ready_file=DIR/ready.json`` followed by ``extra_flags``; its output goes
to DIR/kvtierd.log. The constructor polls the ready file (the daemon renames it into place
once every listener is up) until ``timeout``; it raises :class:`DaemonError` with the log's
tail when the daemon exits first or the wait times out, and never leaves the child running.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Iterable, Optional, Sequence

__all__ = ["Daemon", "DaemonError", "find_kvtierd"]

_POLL_INTERVAL = 0.01


class DaemonError(RuntimeError):
    """kvtierd could not be started (or found)."""


def find_kvtierd(kvtierd: Optional[str] = None) -> str:
    """The kvtierd binary: ``kvtierd`` if given, else $KVTIERD, else ``kvtierd`` on PATH."""
    path = kvtierd or os.environ.get("KVTIERD") or shutil.which("kvtierd")
    if not path:
        raise DaemonError("no kvtierd binary: pass kvtierd= or set $KVTIERD")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise DaemonError(f"kvtierd binary {path!r} is not an executable file")
    return os.path.abspath(path)


class Daemon:
    """One running kvtierd (a context manager; ``stop`` is called on exit and removes DIR).

    Attributes once started: ``dir``, ``pid``, ``unix_socket`` (absolute path),
    ``unix_target`` (``"unix:///abs/DIR/kvtierd.sock"``), ``tcp_port``, ``tcp_target``
    (``"127.0.0.1:PORT"``), ``metrics_port``, ``ready`` (the parsed ready file).
    """

    def __init__(
        self,
        kvtierd: Optional[str] = None,
        extra_flags: Iterable[str] = (),
        timeout: float = 60.0,
        keep_dir: bool = False,
    ) -> None:
        self.binary = find_kvtierd(kvtierd)
        self.extra_flags = list(extra_flags)
        self.keep_dir = keep_dir
        base = os.environ.get("TMPDIR") or "/tmp"
        self.dir = tempfile.mkdtemp(prefix="kvtierd-", dir=base)
        self.unix_socket = os.path.join(self.dir, "kvtierd.sock")
        self.unix_target = "unix://" + self.unix_socket
        self.ready_file = os.path.join(self.dir, "ready.json")
        self.log_file = os.path.join(self.dir, "kvtierd.log")
        self.args: Sequence[str] = [
            self.binary,
            f"--unix_socket={self.unix_socket}",
            "--listen=127.0.0.1:0",
            "--metrics_listen=127.0.0.1:0",
            f"--data_dir={os.path.join(self.dir, 'data')}",
            f"--ready_file={self.ready_file}",
            *self.extra_flags,
        ]
        self.ready: dict = {}
        self.tcp_port = 0
        self.metrics_port = 0
        self.pid = -1
        self._proc: Optional[subprocess.Popen] = None
        self._exit_code: Optional[int] = None
        try:
            self._spawn(timeout)
        except BaseException:
            self._cleanup_dir()
            raise

    @property
    def tcp_target(self) -> str:
        return f"127.0.0.1:{self.tcp_port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _spawn(self, timeout: float) -> None:
        try:
            os.remove(self.ready_file)  # a restart must not see the last run's file
        except FileNotFoundError:
            pass
        with open(self.log_file, "ab") as log, open(os.devnull, "rb") as devnull:
            self._proc = subprocess.Popen(
                list(self.args), stdin=devnull, stdout=log, stderr=subprocess.STDOUT,
                close_fds=True)
        self.pid = self._proc.pid
        self._exit_code = None
        try:
            self._wait_ready(timeout)
        except BaseException:
            # Whatever stopped the wait (its own checks, KeyboardInterrupt in the poll sleep,
            # an OSError reading the ready file): never leave the child running.
            if self._proc.poll() is None:
                self._kill()
            raise

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._exit_code = _exit_code(code)
                raise DaemonError(
                    f"kvtierd exited with {self._exit_code} before it was ready; log:\n"
                    + self.log_tail())
            # The daemon renames the file into place, so a file that exists is complete.
            if os.path.exists(self.ready_file):
                with open(self.ready_file, encoding="utf-8") as f:
                    text = f.read()
                try:
                    self.ready = json.loads(text)
                    self.tcp_port = int(self.ready["tcp_port"])
                    self.metrics_port = int(self.ready["metrics_port"])
                except (ValueError, KeyError, TypeError) as e:
                    self._kill()
                    raise DaemonError(f"bad ready file {text!r}: {e}") from None
                return
            if time.monotonic() >= deadline:
                self._kill()
                raise DaemonError(
                    f"kvtierd not ready after {timeout:g}s; log:\n" + self.log_tail())
            time.sleep(_POLL_INTERVAL)

    def _kill(self) -> int:
        assert self._proc is not None
        if self._proc.poll() is None:
            self._proc.kill()
        self._exit_code = _exit_code(self._proc.wait())
        return self._exit_code

    def log_tail(self, nbytes: int = 4000) -> str:
        """The last ``nbytes`` bytes of the daemon's log (decoded, errors replaced)."""
        try:
            with open(self.log_file, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - nbytes))
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int:
        """Sends SIGTERM and waits up to ``timeout`` seconds; returns the exit code (128 + n
        when killed by signal n). After the timeout the daemon is killed with SIGKILL and
        137 is returned. Calling it again returns the same code."""
        if self._proc is None:
            return -1
        if self._exit_code is not None and self._proc.poll() is not None:
            return self._exit_code
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._exit_code = _exit_code(self._proc.wait(timeout=timeout))
            except subprocess.TimeoutExpired:
                return self._kill()
        else:
            self._exit_code = _exit_code(self._proc.returncode)
        return self._exit_code

    def kill(self) -> int:
        """Kills the daemon with SIGKILL (a crash) and reaps it; returns 137."""
        if self._proc is None:
            return -1
        return self._kill()

    def restart(self, timeout: float = 60.0) -> None:
        """Starts the daemon again in the same DIR with the same flags (after stop or kill)
        and waits for its ready file. Ports may change."""
        if self.running:
            raise DaemonError("restart: the daemon is still running")
        self._spawn(timeout)

    def close(self) -> None:
        """Stops the daemon (if running) and removes DIR unless ``keep_dir``."""
        try:
            if self._proc is not None:
                self.stop()
        finally:
            self._cleanup_dir()

    def _cleanup_dir(self) -> None:
        if not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Daemon":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # last resort: never leave a child behind
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            try:
                proc.kill()
                proc.wait()
            except Exception:  # noqa: BLE001  (interpreter shutdown)
                pass

    def __repr__(self) -> str:
        return (f"Daemon(pid={self.pid}, unix_target={self.unix_target!r}, "
                f"tcp_target={self.tcp_target!r}, metrics_port={self.metrics_port})")


def _exit_code(returncode: int) -> int:
    """subprocess's returncode (negative for a signal) as a shell exit code."""
    return 128 - returncode if returncode < 0 else returncode
