"""Start-up, shutdown and failure of a real server process and its worker processes."""

import os
import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest
import trio

from engine.client import RequestError, connect
from engine.sampling_params import SamplingParams
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
    assert not any(is_alive(pid) for pid in pids), f"orphaned workers: {pids}"


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


async def test_a_dead_worker_fails_requests_clearly_and_the_server_says_so(tiny_model_dir: Path) -> None:
    doomed = start_server(tiny_model_dir, "--num-kv-blocks", "128")
    try:
        async with connect(doomed.host, doomed.rpc_port) as client:
            long = SamplingParams(max_tokens=2000, ignore_eos=True)
            async with client.generate("keep going", long) as generation:
                async for _ in generation:
                    os.kill(doomed.worker_pids[0], signal.SIGKILL)
                    break
                with pytest.raises(RequestError) as raised:
                    async for _ in generation:
                        pass
            assert raised.value.code == "engine_failed"
            assert "model worker rank 0 died (exit code -9)" in raised.value.message
            with pytest.raises(RequestError, match="engine_failed"):
                await client.complete("anyone?", GREEDY)
        async with httpx.AsyncClient() as http:
            health = await http.get(f"{doomed.url}/health")
            assert health.status_code == 503 and "rank 0 died" in health.json()["error"]
            body = {"model": "tiny", "prompt": "hi", "max_tokens": 2}
            refused = await http.post(f"{doomed.url}/v1/completions", json=body)
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "engine_failed"
    finally:
        doomed.stop()


def start_failure(model_dir: Path) -> str:
    with pytest.raises(RuntimeError) as raised:
        start_server(model_dir, timeout_s=120)
    return str(raised.value)


def test_start_up_failures_name_their_reason(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert "unsupported architectures []" in start_failure(tmp_path)

    shutil.copy(tiny_model_dir / "config.json", tmp_path / "config.json")
    assert f"no tokenizer.json in {tmp_path}" in start_failure(tmp_path)

    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(tiny_model_dir / name, tmp_path / name)
    reason = start_failure(tmp_path)
    assert "model worker rank 0 died (exit code 1)" in reason and "safetensors" in reason
