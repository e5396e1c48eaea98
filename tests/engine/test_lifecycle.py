"""Start-up, shutdown and failure of a real server process and its worker processes."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import httpx
import openai
import pytest
import trio

from engine.client import RequestError, connect
from engine.wire.sampling_params import SamplingParams
from support.engine_server import RunningServer, start_server

GREEDY = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)


def is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state


def wait_gone(pids: list[int], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while any(is_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(is_alive(pid) for pid in pids), f"orphaned processes: {pids}"


async def greedy_text(server: RunningServer, prompt: str) -> str:
    async with connect(server.host, server.rpc_port) as client:
        text, _, _ = await client.complete(prompt, GREEDY)
    return text


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
async def test_tensor_parallel_server_matches_one_rank_and_stops_cleanly(
    server: RunningServer, tiny_model_dir: Path, stop_signal: signal.Signals
) -> None:
    parallel = start_server(tiny_model_dir, "--tp", "2", "--num-kv-blocks", "128")
    try:
        assert len(parallel.worker_pids) == 2
        prompt = "tensor parallel on gloo"
        assert await greedy_text(parallel, prompt) == await greedy_text(server, prompt)
        parallel.process.send_signal(stop_signal)
        await trio.sleep(0.05)
        parallel.process.send_signal(stop_signal)  # impatient twice: still a clean shutdown
        assert await trio.to_thread.run_sync(parallel.process.wait, 30) == 0
        wait_gone(parallel.worker_pids)
        assert not any("Traceback" in line for line in parallel.log), "".join(parallel.log)
    finally:
        parallel.stop()


async def failure_after_killing(server: RunningServer, pid: int) -> RequestError:
    """The error a long generation ends with when `pid` is SIGKILLed after its first tokens."""
    async with connect(server.host, server.rpc_port) as client:
        long = SamplingParams(max_tokens=2000, ignore_eos=True)
        async with client.generate("keep going", long) as generation:
            async for _ in generation:
                os.kill(pid, signal.SIGKILL)
                break
            with pytest.raises(RequestError) as raised:
                async for _ in generation:
                    pass
    return raised.value


async def test_a_dead_worker_fails_requests_logs_it_and_exits_non_zero(tiny_model_dir: Path) -> None:
    doomed = start_server(tiny_model_dir, "--num-kv-blocks", "128", "--failure-exit-delay", "2")
    try:
        failure = await failure_after_killing(doomed, doomed.worker_pids[0])
        assert failure.code == "engine_failed"
        assert "model worker rank 0 died (exit code -9)" in failure.message
        async with connect(doomed.host, doomed.rpc_port) as client:
            with pytest.raises(RequestError, match="engine_failed"):
                await client.complete("anyone?", GREEDY)
        async with httpx.AsyncClient() as http:
            health = await http.get(f"{doomed.url}/health")
            assert health.status_code == 503 and "rank 0 died" in health.json()["error"]
            body = {"model": "tiny", "prompt": "hi", "max_tokens": 2}
            refused = await http.post(f"{doomed.url}/v1/completions", json=body)
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "engine_failed"
        assert await trio.to_thread.run_sync(doomed.process.wait, 20) == 1
        logged = "".join(doomed.log)
        assert "ERROR engine: the engine failed: model worker rank 0 died" in logged
        assert "exiting in 2 s with a non-zero status" in logged
    finally:
        doomed.stop()


async def test_a_dead_engine_core_fails_requests_takes_its_workers_and_exits_non_zero(tiny_model_dir: Path) -> None:
    doomed = start_server(tiny_model_dir, "--num-kv-blocks", "128", "--failure-exit-delay", "2")
    try:
        assert doomed.core_pid not in (doomed.process.pid, *doomed.worker_pids)
        failure = await failure_after_killing(doomed, doomed.core_pid)
        assert failure.code == "engine_failed"
        assert "the engine core process died (exit code -9)" in failure.message
        async with httpx.AsyncClient() as http:
            health = await http.get(f"{doomed.url}/health")
            assert health.status_code == 503 and "engine core process died" in health.json()["error"]
        wait_gone(doomed.worker_pids)  # the workers die with their parent, the core
        assert await trio.to_thread.run_sync(doomed.process.wait, 20) == 1
        assert "exiting in 2 s with a non-zero status" in "".join(doomed.log)
    finally:
        doomed.stop()


def test_a_killed_server_leaves_no_engine_core_or_worker_behind(tiny_model_dir: Path) -> None:
    killed = start_server(tiny_model_dir, "--num-kv-blocks", "64")
    try:
        os.kill(killed.process.pid, signal.SIGKILL)
        wait_gone([killed.core_pid, *killed.worker_pids])
    finally:
        killed.stop()


async def test_a_worker_dying_while_idle_is_noticed_at_once(tiny_model_dir: Path) -> None:
    doomed = start_server(tiny_model_dir, "--num-kv-blocks", "128", "--failure-exit-delay", "30")
    try:
        os.kill(doomed.worker_pids[0], signal.SIGKILL)
        async with httpx.AsyncClient() as http:
            with trio.fail_after(5):
                while (await http.get(f"{doomed.url}/health")).status_code == 200:
                    await trio.sleep(0.05)
    finally:
        doomed.stop()


@pytest.mark.parametrize("to_the_group", [False, True], ids=["to-the-server", "to-its-process-group"])
async def test_sigterm_drains_requests_in_flight_and_refuses_new_ones(tiny_model_dir: Path, to_the_group: bool) -> None:
    """Also when the signal reaches every process of the group (a supervisor stopping it): the
    engine core and the workers leave the stopping to the front-end, which drains first."""
    draining = start_server(
        tiny_model_dir, "--num-kv-blocks", "256", "--shutdown-timeout", "30", own_process_group=to_the_group
    )
    stop = partial(os.killpg, draining.process.pid) if to_the_group else draining.process.send_signal
    try:
        async with connect(draining.host, draining.rpc_port) as client:
            sampling = SamplingParams(max_tokens=150, ignore_eos=True)
            async with client.generate("finish me", sampling) as generation:
                tokens = 0
                async for chunk in generation:
                    if tokens == 0:
                        stop(signal.SIGTERM)
                        async with httpx.AsyncClient() as http:
                            with trio.fail_after(5):
                                while (await http.get(f"{draining.url}/health")).status_code == 200:
                                    await trio.sleep(0.02)
                            body = {"model": "tiny", "prompt": "late", "max_tokens": 2}
                            late = await http.post(f"{draining.url}/v1/completions", json=body)
                        assert late.status_code == 503 and late.json()["error"]["code"] == "unavailable"
                    tokens += len(chunk.token_ids)
            assert generation.result is not None and generation.result.finish_reason == "length"
            assert tokens == 150
        assert await trio.to_thread.run_sync(draining.process.wait, 30) == 0
        wait_gone([draining.core_pid, *draining.worker_pids])
    finally:
        draining.stop()


async def test_the_shutdown_timeout_bounds_the_drain(tiny_model_dir: Path) -> None:
    stuck = start_server(tiny_model_dir, "--num-kv-blocks", "256", "--shutdown-timeout", "1")
    try:
        async with connect(stuck.host, stuck.rpc_port) as client:
            async with client.generate("too long", SamplingParams(max_tokens=1900, ignore_eos=True)) as generation:
                async for _ in generation:
                    break
                started = time.monotonic()
                stuck.process.send_signal(signal.SIGTERM)
                assert await trio.to_thread.run_sync(stuck.process.wait, 30) == 0
        assert time.monotonic() - started < 10
        assert "shutting down with 1 requests still in flight" in "".join(stuck.log)
    finally:
        stuck.stop()


def test_a_port_in_use_is_named_before_the_model_loads(tiny_model_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "engine", "--model", str(tiny_model_dir), "--port", str(port), "--rpc-port", "0"],
            capture_output=True, text=True, timeout=120,
        )
    assert result.returncode == 1
    assert f"cannot listen on http://127.0.0.1:{port}: Address already in use" in result.stderr
    assert "worker" not in result.stderr and time.monotonic() - started < 60


def test_a_non_loopback_address_without_a_key_is_warned_about(tiny_model_dir: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is no address of this machine: the bind fails after the warning.
    result = subprocess.run(
        [sys.executable, "-m", "engine", "--model", str(tiny_model_dir), "--host", "192.0.2.1", "--port", "0"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert "WARNING engine: listening on 192.0.2.1 without --api-key" in result.stderr
    assert "cannot listen on http://192.0.2.1:0" in result.stderr


async def test_an_api_key_guards_http_and_rpc(tiny_model_dir: Path) -> None:
    guarded = start_server(tiny_model_dir, "--num-kv-blocks", "64", "--api-key", "sesame")
    try:
        async with httpx.AsyncClient(base_url=guarded.url) as http:
            assert (await http.get("/v1/models")).status_code == 401
            wrong = await http.get("/v1/models", headers={"Authorization": "Bearer open"})
            assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
            assert (await http.get("/health")).status_code == 200
            assert (await http.get("/metrics")).status_code == 200
            assert (await http.post("/tokenize", json={"prompt": "x"})).status_code == 401
        async with openai.AsyncOpenAI(base_url=f"{guarded.url}/v1", api_key="sesame", max_retries=0) as key_client:
            reply = await key_client.completions.create(model="tiny", prompt="hi", max_tokens=2)
        assert reply.usage is not None and reply.usage.completion_tokens >= 1
        async with openai.AsyncOpenAI(base_url=f"{guarded.url}/v1", api_key="nope", max_retries=0) as wrong_client:
            with pytest.raises(openai.AuthenticationError):
                await wrong_client.models.list()
        with pytest.raises(RequestError, match="unauthorized: invalid API key"):
            async with connect(guarded.host, guarded.rpc_port):
                pass
        async with connect(guarded.host, guarded.rpc_port, api_key="sesame") as client:
            _, token_ids, _ = await client.complete("hi", GREEDY)
            assert len(token_ids) == 8
    finally:
        guarded.stop()


def start_failure(model_dir: Path) -> str:
    with pytest.raises(RuntimeError) as raised:
        start_server(model_dir, timeout_s=120)
    return str(raised.value)


def test_start_up_failures_name_their_reason(tmp_path: Path, tiny_model_dir: Path) -> None:
    assert f"{tmp_path} has no config.json" in start_failure(tmp_path)

    (tmp_path / "config.json").write_text("{}")
    assert "unsupported architectures []" in start_failure(tmp_path)

    shutil.copy(tiny_model_dir / "config.json", tmp_path / "config.json")
    assert f"no tokenizer.json in {tmp_path}" in start_failure(tmp_path)

    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(tiny_model_dir / name, tmp_path / name)
    reason = start_failure(tmp_path)
    assert "model worker rank 0 died (exit code 1)" in reason and "safetensors" in reason


def test_the_attention_backends_offered_are_the_ones_that_exist() -> None:
    result = subprocess.run([sys.executable, "-m", "engine", "--attention-backend", "torch"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "invalid choice: 'torch' (choose from 'auto', 'reference', 'sdpa', 'flash', 'triton')" in result.stderr


TORCH_GUARD = '''
import importlib.abc, os, sys

if os.environ.get("ENGINE_TORCH_GUARD") == "1":
    guarded = os.environ.setdefault("ENGINE_TORCH_GUARD_PID", str(os.getpid()))

    class NoTorchHere(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if os.getpid() == int(guarded) and (name == "torch" or name.startswith("torch.")):
                raise ImportError(f"torch imported in the engine process ({name})")
            return None

    sys.meta_path.insert(0, NoTorchHere())
'''


async def test_the_engine_processes_never_import_torch(tmp_path: Path) -> None:
    """`python -m engine` on its defaults (the demo model): only the workers import PyTorch, not
    the front-end process (the guard) nor the engine core (its mapped libraries)."""
    (tmp_path / "sitecustomize.py").write_text(TORCH_GUARD)
    env = {**os.environ, "ENGINE_TORCH_GUARD": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    guarded = start_server(None, name="demo", env=env)
    try:
        async with httpx.AsyncClient(base_url=guarded.url) as http:
            body = {"model": "demo", "prompt": "no torch here", "max_tokens": 3, "logprobs": 1, "n": 2}
            reply = await http.post("/v1/completions", json=body, timeout=60)
            assert reply.status_code == 200, reply.text
            assert (await http.post("/tokenize", json={"prompt": "x"})).status_code == 200
        assert not any("torch imported in the engine process" in line for line in guarded.log)
        # Nor does the engine core process; the workers do (so the check can tell).
        assert "libtorch" not in Path(f"/proc/{guarded.core_pid}/maps").read_text()
        assert "libtorch" in Path(f"/proc/{guarded.worker_pids[0]}/maps").read_text()
    finally:
        assert guarded.stop() == 0
