"""What rude and careless clients do to `python -m engine` (demo model, CPU), each scenario
against a fresh server process, with the figures a production user would watch.

- rpc_disconnect: 50 RPC requests (300 tokens each) from a client that closes its socket
  without reading or aborting; seconds until nothing runs and the KV pool is full again.
- http_early_close: 10 raw HTTP streaming requests (300 tokens) closed right after sending;
  how many ran to their end anyway, and seconds until the KV pool is full.
- long_prompt: a 4 MB prompt and a 30 MB body, each while /health is polled and one stream
  runs: the refusal's status and seconds, the worst /health latency, the stream's worst gap
  between tokens, and the server's resident memory afterwards.
- slow_connections: how long a half-sent HTTP body and an RPC connection that never says
  Hello stay open (capped at 30 s).
- concurrent_streams: 300 concurrent streams of 10-16 tokens, how many got exactly their
  token count.

Usage: .venv/bin/python benchmarks/rude_clients.py [--only NAME ...]. The last line is one
JSON object keyed by scenario.
"""

import argparse
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from engine.wire.framing import frame  # noqa: E402
from engine.wire.protocol import PROTOCOL_VERSION, Generate, Hello  # noqa: E402
from engine.wire.sampling_params import SamplingParams  # noqa: E402
from support.engine_server import RunningServer, start_server  # noqa: E402

SERVER_OPTIONS = ("--num-kv-blocks", "2048", "--max-num-seqs", "64")
WAIT_CAP_S = 60.0


def metric(server: RunningServer, name: str, labels: str = "") -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    total = 0.0
    for match in re.finditer(rf"^{re.escape(name)}{{([^}}]*)}} ([0-9.e+-]+)$", text, re.MULTILINE):
        if labels in match.group(1):
            total += float(match.group(2))
    return total


def seconds_until_idle(server: RunningServer, started: float) -> float | None:
    """Seconds from `started` until nothing runs and every KV block is free; None past the cap."""
    total = metric(server, "engine_kv_blocks_total")
    while time.monotonic() - started < WAIT_CAP_S:
        if metric(server, "engine_requests_running") == 0 and metric(server, "engine_kv_blocks_free") == total:
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def rpc_disconnect(server: RunningServer) -> dict[str, Any]:
    sock = socket.create_connection((server.host, server.rpc_port))
    sock.sendall(frame(msgspec.msgpack.encode(Hello(protocol_version=PROTOCOL_VERSION))))
    sampling = SamplingParams(max_tokens=300, ignore_eos=True)
    for request_id in range(50):
        generate = Generate(request_id=request_id, prompt=f"request {request_id}", sampling=sampling)
        sock.sendall(frame(msgspec.msgpack.encode(generate)))
    time.sleep(1.0)
    running = metric(server, "engine_requests_running")
    closed = time.monotonic()
    sock.close()
    return {"running_before_close": running, "idle_after_close_s": seconds_until_idle(server, closed)}


def http_early_close(server: RunningServer) -> dict[str, Any]:
    finished_before = metric(server, "engine_requests_finished_total", 'reason="length"')
    body = json.dumps(
        {"model": "bench", "prompt": "close me", "max_tokens": 300, "stream": True, "ignore_eos": True}
    ).encode()
    request = (
        f"POST /v1/completions HTTP/1.1\r\nHost: {server.host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    closed = time.monotonic()
    for _ in range(10):
        with socket.create_connection((server.host, server.http_port)) as sock:
            sock.sendall(request)
    idle = seconds_until_idle(server, closed)
    ran_to_end = metric(server, "engine_requests_finished_total", 'reason="length"') - finished_before
    return {"requests": 10, "ran_to_end": ran_to_end, "idle_after_close_s": idle}


class HealthPoller:
    """Polls /health every 10 ms on its own thread and keeps the worst latency."""

    def __init__(self, server: RunningServer):
        self._url = f"{server.url}/health"
        self._stop = threading.Event()
        self.worst_s = 0.0
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        with httpx.Client(timeout=120) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                client.get(self._url)
                self.worst_s = max(self.worst_s, time.monotonic() - started)
                time.sleep(0.01)

    def __enter__(self) -> "HealthPoller":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class StreamGaps:
    """One long stream on its own thread; keeps the worst gap between its events."""

    def __init__(self, server: RunningServer):
        self._url = f"{server.url}/v1/completions"
        self.worst_gap_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._stream, daemon=True)

    def _stream(self) -> None:
        body = {"model": "bench", "prompt": "steady", "max_tokens": 1500, "stream": True, "ignore_eos": True}
        with httpx.stream("POST", self._url, json=body, timeout=300) as response:
            last = time.monotonic()
            for line in response.iter_lines():
                now = time.monotonic()
                if line.startswith("data: "):
                    self.worst_gap_s = max(self.worst_gap_s, now - last)
                    last = now
                if self._stop.is_set():
                    break

    def __enter__(self) -> "StreamGaps":
        self._thread.start()
        time.sleep(1.0)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def long_prompt(server: RunningServer) -> dict[str, Any]:
    results: dict[str, Any] = {"rss_before_mib": rss_mib(server.process.pid)}
    for name, size in (("4mb_prompt", 4 * 2**20), ("30mb_body", 30 * 2**20)):
        body = json.dumps({"model": "bench", "prompt": "word " * (size // 5), "max_tokens": 4}).encode()
        with HealthPoller(server) as health, StreamGaps(server) as stream:
            started = time.monotonic()
            response = httpx.post(
                f"{server.url}/v1/completions",
                content=body,
                headers={"content-type": "application/json"},
                timeout=300,
            )
            elapsed = time.monotonic() - started
        results[name] = {
            "status": response.status_code,
            "seconds": elapsed,
            "worst_health_s": health.worst_s,
            "worst_stream_gap_s": stream.worst_gap_s,
        }
    results["rss_after_mib"] = rss_mib(server.process.pid)
    return results


def seconds_open(connect: Callable[[], socket.socket]) -> float:
    """How long the server keeps the connection open (until it closes, capped)."""
    sock = connect()
    sock.settimeout(WAIT_CAP_S)
    started = time.monotonic()
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        pass
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return time.monotonic() - started


def slow_connections(server: RunningServer) -> dict[str, Any]:
    def half_body() -> socket.socket:
        sock = socket.create_connection((server.host, server.http_port))
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{\"model\": "
        )
        return sock

    def no_hello() -> socket.socket:
        return socket.create_connection((server.host, server.rpc_port))

    return {"half_sent_body_open_s": seconds_open(half_body), "rpc_without_hello_open_s": seconds_open(no_hello)}


def concurrent_streams(server: RunningServer) -> dict[str, Any]:
    counts: dict[int, int | None] = {}

    async def main() -> None:
        limits = httpx.Limits(max_connections=300)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=600) as http:

            async def one(index: int) -> None:
                body = {"model": "bench", "prompt": f"stream {index}", "max_tokens": 10 + index % 7, "stream": True,
                        "ignore_eos": True, "stream_options": {"include_usage": True}}
                async with http.stream("POST", "/v1/completions", json=body) as response:
                    events = [json.loads(line[6:]) async for line in response.aiter_lines()
                              if line.startswith("data: {")]
                counts[index] = events[-1].get("usage", {}).get("completion_tokens") if events else None

            async with trio.open_nursery() as nursery:
                for index in range(300):
                    nursery.start_soon(one, index)

    started = time.monotonic()
    trio.run(main)
    exact = sum(counts.get(index) == 10 + index % 7 for index in range(300))
    return {"streams": 300, "exact_token_counts": exact, "seconds": time.monotonic() - started,
            "idle_after_s": seconds_until_idle(server, time.monotonic())}


SCENARIOS = {
    "rpc_disconnect": rpc_disconnect,
    "http_early_close": http_early_close,
    "long_prompt": long_prompt,
    "slow_connections": slow_connections,
    "concurrent_streams": concurrent_streams,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=list(SCENARIOS), help="run only these scenarios")
    args = parser.parse_args()
    from engine.demo_model import default_demo_model_dir

    model = default_demo_model_dir()
    results = {}
    for name in args.only or SCENARIOS:
        server = start_server(model, *SERVER_OPTIONS, name="bench")
        try:
            results[name] = SCENARIOS[name](server)
        finally:
            server.stop()
        print(f"{name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
