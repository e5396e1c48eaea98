"""`--enforce-eager` through the server users run: the start-up log says what the workers did
about CUDA graphs (on the CPU, always eager), and the server serves."""

from pathlib import Path

import httpx

from support.engine_server import RunningServer, start_server


def graphs_lines(server: RunningServer) -> list[str]:
    return [line for line in server.log if "CUDA graphs" in line]


def completes(server: RunningServer) -> bool:
    body = {"model": "tiny", "prompt": "The quick brown fox", "max_tokens": 4, "temperature": 0}
    reply = httpx.post(f"{server.url}/v1/completions", json=body, timeout=60)
    return reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 4


def test_the_start_up_log_says_why_graphs_are_off(server: RunningServer, tiny_model_dir: Path) -> None:
    (line,) = graphs_lines(server)
    assert line.rstrip().endswith("INFO engine: CUDA graphs off: the cpu runs eagerly")
    eager = start_server(tiny_model_dir, "--enforce-eager", "--num-kv-blocks", "64", "--max-num-seqs", "4")
    try:
        (line,) = graphs_lines(eager)
        assert line.rstrip().endswith("INFO engine: CUDA graphs off: enforce_eager is set")
        assert completes(eager)
    finally:
        assert eager.stop() == 0
