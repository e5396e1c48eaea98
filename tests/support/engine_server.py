"""Starting a real engine process for end-to-end tests."""

import queue
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


READY = re.compile(
    r"on http://([\d.]+):(\d+) \(OpenAI API\) and tcp://[\d.]+:(\d+) \(msgspec RPC\); worker pids ([\d,]+); "
    r"engine core pid (\d+)"
)


@dataclass
class RunningServer:
    process: subprocess.Popen[str]
    host: str
    http_port: int
    rpc_port: int
    worker_pids: list[int]
    core_pid: int
    log: list[str] = field(default_factory=list)
    drain: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        code = self.process.wait()
        if self.drain is not None:
            self.drain.join(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return code


def start_server(
    model_dir: Path | None,
    *args: str,
    name: str = "tiny",
    timeout_s: float = 180,
    env: dict[str, str] | None = None,
    own_process_group: bool = False,
) -> RunningServer:
    """Starts `python -m engine` on free ports and waits until it is serving (`model_dir`
    None: the built-in demo model; `own_process_group`: in a new session, as a supervisor
    starts it, so that a signal can go to its whole group)."""
    command = [sys.executable, "-m", "engine", "--served-model-name", name, "--port", "0", "--rpc-port", "0"]
    if model_dir is not None:
        command += ["--model", str(model_dir)]
    command += args
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
        start_new_session=own_process_group,
    )
    assert process.stderr is not None
    log: list[str] = []
    ready: queue.Queue[re.Match[str] | None] = queue.Queue()

    def drain(stderr: IO[str]) -> None:
        for line in stderr:
            log.append(line)
            if match := READY.search(line):
                ready.put(match)
        ready.put(None)

    drainer = threading.Thread(target=drain, args=(process.stderr,), daemon=True)
    drainer.start()
    try:
        match = ready.get(timeout=timeout_s)
    except queue.Empty:
        match = None
    if match is None:
        process.kill()
        process.wait()
        drainer.join(timeout=5)
        process.stderr.close()
        raise RuntimeError("the engine did not start:\n" + "".join(log))
    pids = [int(pid) for pid in match.group(4).split(",")]
    host, http_port, rpc_port, core_pid = match.group(1), int(match.group(2)), int(match.group(3)), int(match.group(5))
    return RunningServer(process, host, http_port, rpc_port, pids, core_pid, log, drainer)


def metric(server: RunningServer, name: str, labels: str = "") -> float:
    """A value from the server's /metrics (summed over series whose labels contain `labels`)."""
    import httpx

    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    values = [
        float(match.group(2))
        for match in re.finditer(rf"^{re.escape(name)}{{([^}}]*)}} ([0-9.e+-]+)$", text, re.MULTILINE)
        if labels in match.group(1)
    ]
    assert values, f"{name} {labels} not in /metrics"
    return sum(values)


def wait_pool_full(server: RunningServer, timeout_s: float = 15.0) -> float:
    """Waits until no request runs or waits and every KV block is free again; returns the seconds
    it took. Fails the test when that does not happen within `timeout_s`."""
    import time

    started = time.monotonic()
    total = metric(server, "engine_kv_blocks_total")
    while True:
        idle = metric(server, "engine_requests_running") == 0 and metric(server, "engine_requests_waiting") == 0
        if idle and metric(server, "engine_kv_blocks_free") == total:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout_s, (
            f"KV pool not full {timeout_s} s later: {metric(server, 'engine_kv_blocks_free')} of {total} blocks free, "
            f"{metric(server, 'engine_requests_running')} running"
        )
        time.sleep(0.02)
