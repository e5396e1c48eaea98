"""Clients that disconnect, send enormous prompts, or send slowly or nothing at all, against a
real server process. After each, nothing runs, the KV pool is full again and the server serves."""

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from engine.wire.framing import frame, recv_frame
from engine.wire.protocol import PROTOCOL_VERSION, Error, Generate, Hello, server_decoder
from engine.wire.sampling_params import SamplingParams
from support.engine_server import RunningServer, metric, start_server, wait_pool_full

LONG = SamplingParams(max_tokens=1500, ignore_eos=True)


@pytest.fixture(scope="module")
def strict(tiny_model_dir: Path) -> Iterator[RunningServer]:
    """A server with one-second header, body and Hello timeouts."""
    running = start_server(
        tiny_model_dir, "--num-kv-blocks", "1024", "--max-num-seqs", "64",
        "--header-timeout", "1", "--body-timeout", "1", "--hello-timeout", "1", "--log-stats-interval", "0.5",
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def roomy(tiny_model_dir: Path) -> Iterator[RunningServer]:
    """A server with the default timeouts, for load that a busy machine may send slowly."""
    running = start_server(
        tiny_model_dir, "--num-kv-blocks", "1024", "--max-num-seqs", "64", "--log-stats-interval", "0.5"
    )
    yield running
    running.stop()


def still_serves(server: RunningServer) -> None:
    body = {"model": "tiny", "prompt": "still there?", "max_tokens": 2, "ignore_eos": True}
    assert httpx.post(f"{server.url}/v1/completions", json=body, timeout=30).json()["usage"]["completion_tokens"] == 2
    wait_pool_full(server)


def finished(server: RunningServer, reason: str) -> float:
    return metric(server, "engine_requests_finished_total", f'reason="{reason}"')


def test_an_rpc_client_that_closes_without_aborting_aborts_everything_at_once(strict: RunningServer) -> None:
    ran_to_end = finished(strict, "length")
    sock = socket.create_connection((strict.host, strict.rpc_port))
    sock.sendall(frame(msgspec.msgpack.encode(Hello(protocol_version=PROTOCOL_VERSION))))
    for request_id in range(20):
        sock.sendall(frame(msgspec.msgpack.encode(Generate(request_id=request_id, prompt=f"r{request_id}",
                                                           sampling=LONG))))
    deadline = time.monotonic() + 20
    while metric(strict, "engine_requests_running") < 20:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    sock.close()  # never read, never aborted
    assert wait_pool_full(strict, timeout_s=2.0) < 2.0  # 1500 tokens each would take far longer
    assert finished(strict, "length") == ran_to_end
    still_serves(strict)


def raw_http_request(body: dict[str, object]) -> bytes:
    payload = json.dumps(body).encode()
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode()
    return head + payload


@pytest.mark.parametrize("stream", [True, False])
def test_http_clients_that_close_right_after_sending_are_aborted(strict: RunningServer, stream: bool) -> None:
    ran_to_end = finished(strict, "length")
    request = raw_http_request({"model": "tiny", "prompt": "close me", "max_tokens": 1500, "stream": stream,
                                "ignore_eos": True})
    for _ in range(10):
        with socket.create_connection((strict.host, strict.http_port)) as sock:
            sock.sendall(request)
    assert wait_pool_full(strict, timeout_s=3.0) < 3.0
    assert finished(strict, "length") == ran_to_end
    still_serves(strict)


class HealthWatch:
    """Polls /health on a thread while a block runs; keeps the slowest answer."""

    def __init__(self, server: RunningServer):
        self._url = f"{server.url}/health"
        self.slowest_s = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll)

    def _poll(self) -> None:
        with httpx.Client(timeout=60) as http:
            while not self._done.is_set():
                started = time.monotonic()
                assert http.get(self._url).status_code == 200
                self.slowest_s = max(self.slowest_s, time.monotonic() - started)
                time.sleep(0.005)

    def __enter__(self) -> "HealthWatch":
        self._thread.start()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


@pytest.mark.parametrize("megabytes", [4, 30])
def test_a_prompt_far_too_long_is_refused_at_once_without_stalling_the_server(
    strict: RunningServer, megabytes: int
) -> None:
    body = json.dumps({"model": "tiny", "prompt": "word " * (megabytes * 2**20 // 5), "max_tokens": 4}).encode()
    with HealthWatch(strict) as health:
        started = time.monotonic()
        response = httpx.post(f"{strict.url}/v1/completions", content=body, timeout=120,
                              headers={"content-type": "application/json"})
        elapsed = time.monotonic() - started
    assert response.status_code == 400
    assert "maximum context length is 2048 tokens, but the prompt has" in response.json()["error"]["message"]
    assert elapsed < 2.0 and health.slowest_s < 0.5, (elapsed, health.slowest_s)
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "x" * (4 * 2**20)}]}
    refused = httpx.post(f"{strict.url}/v1/chat/completions", json=chat, timeout=120)
    assert refused.status_code == 400 and "maximum context length" in refused.json()["error"]["message"]
    listed = {"model": "tiny", "prompt": ["fine", "word " * 2**20]}
    refused = httpx.post(f"{strict.url}/v1/completions", json=listed, timeout=120)
    assert refused.status_code == 400 and "maximum context length" in refused.json()["error"]["message"]
    still_serves(strict)


def test_a_prompt_just_over_the_context_is_tokenized_and_refused(strict: RunningServer) -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 400
    with HealthWatch(strict) as health:
        response = httpx.post(f"{strict.url}/v1/completions", json={"model": "tiny", "prompt": text}, timeout=60)
    assert response.status_code == 400 and "prompt tokens plus max_tokens" in response.json()["error"]["message"]
    assert health.slowest_s < 0.5
    still_serves(strict)


def seconds_until_closed(sock: socket.socket, cap_s: float = 10.0) -> tuple[float, bytes]:
    """Seconds until the server closes the connection, and what it sent before."""
    sock.settimeout(cap_s)
    started = time.monotonic()
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return time.monotonic() - started, received


def test_a_half_sent_body_gets_a_408_once_the_body_timeout_passes(strict: RunningServer) -> None:
    with socket.create_connection((strict.host, strict.http_port)) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"model\": ")
        elapsed, received = seconds_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in received
    assert elapsed < 4.0


def test_half_sent_headers_and_idle_connections_are_closed(strict: RunningServer) -> None:
    with socket.create_connection((strict.host, strict.http_port)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        elapsed, _ = seconds_until_closed(sock)
    assert elapsed < 4.0
    with socket.create_connection((strict.host, strict.http_port)) as sock:
        elapsed, _ = seconds_until_closed(sock)
    assert elapsed < 4.0


def test_an_upload_cut_short_is_no_error_in_the_log(strict: RunningServer) -> None:
    before = len(strict.log)
    with socket.create_connection((strict.host, strict.http_port)) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n" + b"{" * 1000)
    time.sleep(0.5)
    still_serves(strict)
    logged = "".join(strict.log[before:])
    assert "Traceback" not in logged and " ERROR " not in logged, logged


def read_message(sock: socket.socket) -> object:
    return server_decoder.decode(recv_frame(sock) or b"")


def test_an_rpc_connection_without_hello_is_told_and_closed(strict: RunningServer) -> None:
    with socket.create_connection((strict.host, strict.rpc_port)) as sock:
        sock.settimeout(10)
        started = time.monotonic()
        message = read_message(sock)
        assert isinstance(message, Error) and message.code == "timeout" and "no Hello within 1 s" in message.message
        assert recv_frame(sock) is None and time.monotonic() - started < 4.0


def test_garbage_before_hello_closes_the_rpc_connection(strict: RunningServer) -> None:
    with socket.create_connection((strict.host, strict.rpc_port)) as sock:
        sock.settimeout(10)
        sock.sendall(frame(b"\xc1 garbage"))
        message = read_message(sock)
        assert isinstance(message, Error) and message.code == "invalid_message"
        assert recv_frame(sock) is None
    with socket.create_connection((strict.host, strict.rpc_port)) as sock:
        sock.settimeout(10)
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")  # an HTTP client at the RPC port: a huge "frame size"
        message = read_message(sock)
        assert isinstance(message, Error) and message.code == "frame_error"
        assert recv_frame(sock) is None


def test_three_hundred_concurrent_streams_each_get_exactly_their_tokens(roomy: RunningServer) -> None:
    import trio

    counts: dict[int, int] = {}

    async def main() -> None:
        limits = httpx.Limits(max_connections=300)
        async with httpx.AsyncClient(base_url=roomy.url, limits=limits, timeout=300) as http:

            async def one(index: int) -> None:
                body = {"model": "tiny", "prompt": f"stream {index}", "max_tokens": 10 + index % 7, "stream": True,
                        "ignore_eos": True, "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
                async with http.stream("POST", "/v1/completions", json=body) as response:
                    events = [json.loads(line[6:]) async for line in response.aiter_lines()
                              if line.startswith("data: {")]
                counts[index] = events[-1]["usage"]["completion_tokens"]

            with trio.fail_after(240):
                async with trio.open_nursery() as nursery:
                    for index in range(300):
                        nursery.start_soon(one, index)

    trio.run(main)
    assert counts == {index: 10 + index % 7 for index in range(300)}
    wait_pool_full(roomy)
    stats = [line for line in roomy.log if "engine.stats" in line]
    assert any("generation throughput" in line and "KV cache" in line for line in stats)


def test_a_prompt_the_kv_cache_can_never_hold_is_refused_and_the_server_goes_on(tiny_model_dir: Path) -> None:
    small = start_server(tiny_model_dir, "--num-kv-blocks", "4", "--block-size", "16")
    try:
        body = {"model": "tiny", "prompt": list(range(5, 105)), "max_tokens": 2}
        response = httpx.post(f"{small.url}/v1/completions", json=body, timeout=30)
        assert response.status_code == 400
        assert "the prompt needs 7 KV blocks but the cache admits at most 4" in response.json()["error"]["message"]
        still_serves(small)
        assert small.process.poll() is None
    finally:
        small.stop()
