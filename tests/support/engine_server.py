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


READY = re.compile(r"on http://([\d.]+):(\d+) \(OpenAI API\) and tcp://[\d.]+:(\d+) \(msgspec RPC\); worker pids ([\d,]+)")


@dataclass
class RunningServer:
    process: subprocess.Popen[str]
    host: str
    http_port: int
    rpc_port: int
    worker_pids: list[int]
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


def start_server(model_dir: Path, *args: str, name: str = "tiny", timeout_s: float = 180) -> RunningServer:
    """Starts `python -m engine` on free ports and waits until it is serving."""
    command = [sys.executable, "-m", "engine", "--model", str(model_dir), "--served-model-name", name]
    command += ["--port", "0", "--rpc-port", "0", *args]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
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
    return RunningServer(process, match.group(1), int(match.group(2)), int(match.group(3)), pids, log, drainer)
