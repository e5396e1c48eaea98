"""A `python -m engine` process started for a validation run, on free ports of 127.0.0.1, writing
its iteration log; stopped (SIGTERM, then SIGKILL) when the run is over."""

import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

READY = re.compile(r"on http://[\d.]+:\d+ \(OpenAI API\) and tcp://([\d.]+):(\d+) \(msgspec RPC\)")
# Flags validation sets itself: the engine must not be told them twice.
OWN_FLAGS = ("--port", "--rpc-port", "--host", "--iteration-log")


@dataclass(frozen=True, slots=True)
class RunningEngine:
    host: str
    rpc_port: int
    iteration_log: Path
    log: list[str]


def check_engine_args(engine_args: Sequence[str]) -> None:
    for flag in OWN_FLAGS:
        if any(arg == flag or arg.startswith(flag + "=") for arg in engine_args):
            raise ValueError(f"the engine's {flag} is set by vidur validate; leave it out of --engine-args")


@contextmanager
def running_engine(engine_args: Sequence[str], iteration_log: Path, timeout_s: float = 300.0) -> Iterator[RunningEngine]:
    check_engine_args(engine_args)
    command = [sys.executable, "-m", "engine", *engine_args, "--port", "0", "--rpc-port", "0",
               "--iteration-log", str(iteration_log), "--no-access-log", "--log-stats-interval", "0"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    lines: list[str] = []
    ready: queue.Queue[re.Match[str] | None] = queue.Queue()

    def drain() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if match := READY.search(line):
                ready.put(match)
        ready.put(None)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        try:
            match = ready.get(timeout=timeout_s)
        except queue.Empty:
            match = None
        if match is None:
            raise RuntimeError("the engine did not start:\n" + "".join(lines[-30:]))
        yield RunningEngine(match.group(1), int(match.group(2)), iteration_log, lines)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        process.wait()
        reader.join(timeout=5)
        process.stderr.close()
