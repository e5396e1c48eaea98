"""A server metron starts itself: its own process group, its output in a log file, ready when its
health URL answers 200, and stopped with the whole group (SIGTERM, then SIGKILL after a grace
period) so that nothing it started outlives it."""

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

POLL_INTERVAL_S = 0.1
KILL_WAIT_S = 5.0
# The server is on this machine: no proxy from the environment stands between.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerFailedToStart(Exception):
    """The server exited, or did not become healthy in time; `log_tail` holds the end of its log."""

    def __init__(self, message: str, log_tail: list[str]) -> None:
        super().__init__(message)
        self.log_tail = log_tail


def free_loopback_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now (another process may still take one before the
    server binds it)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class LaunchedServer:
    """Use as `with LaunchedServer(argv, log_path) as server:`; leaving the block stops it, also on
    errors and Ctrl-C (the group is its own, so a terminal's SIGINT does not reach it)."""

    def __init__(self, argv: Sequence[str], log_path: Path, stop_grace_s: float = 10.0) -> None:
        if not argv:
            raise ValueError("the launch command is empty")
        self.argv = list(argv)
        self.log_path = log_path
        self.stop_grace_s = stop_grace_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """Also the id of its process group."""
        if self._process is None:
            raise RuntimeError("the server has not been started")
        return self._process.pid

    def __enter__(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            try:
                self._process = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            except OSError as error:
                raise ServerFailedToStart(f"cannot run {self.argv[0]}: {error}", []) from error
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def wait_until_healthy(self, health_url: str, timeout_s: float) -> None:
        """Returns once `health_url` answers 200; raises ServerFailedToStart if the server exits
        first or `timeout_s` passes."""
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.exit_code()
            if code is not None:
                raise ServerFailedToStart(f"the server exited with status {code} before it was healthy", self.log_tail())
            if _answers_200(health_url, timeout_s=max(0.1, min(2.0, deadline - time.monotonic()))):
                return
            if time.monotonic() >= deadline:
                raise ServerFailedToStart(
                    f"the server did not answer {health_url} with 200 within {timeout_s:g} s", self.log_tail()
                )
            time.sleep(POLL_INTERVAL_S)

    def exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL to what is left of it after the grace period; returns once
        the group is gone (or KILL_WAIT_S after the SIGKILL, should a parent not reap a member)."""
        if self._process is None:
            return
        _signal_group(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None and not _group_exists(self.pid):
                return
            time.sleep(POLL_INTERVAL_S)
        _signal_group(self.pid, signal.SIGKILL)
        self._process.wait()
        # The shell's children die on their own time after the SIGKILL, not when the shell does.
        deadline = time.monotonic() + KILL_WAIT_S
        while _group_exists(self.pid) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL_S)

    def log_tail(self, num_lines: int = 20) -> list[str]:
        try:
            lines = self.log_path.read_bytes().decode(errors="replace").splitlines()
        except OSError:
            return []
        return lines[-num_lines:]


def _answers_200(url: str, timeout_s: float) -> bool:
    try:
        with _DIRECT.open(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _signal_group(group_id: int, signum: int) -> None:
    try:
        os.killpg(group_id, signum)
    except ProcessLookupError:
        pass


def _group_exists(group_id: int) -> bool:
    """Counts a member that has exited but not been reaped by its parent yet."""
    try:
        os.killpg(group_id, 0)
    except ProcessLookupError:
        return False
    return True
