"""`--pp`: the layers split over pipeline stages (gloo on the CPU), alone and with tensor
parallelism inside each stage, through the real server: greedy tokens equal transformers', and
a worker dying in any stage fails the requests cleanly and stops the server."""

import os
import signal
from pathlib import Path

import pytest
import trio

from engine.client import RequestError, SamplingParams, connect
from engine.demo_model import build_demo_model
from engine.worker.model.parallel import PipelineStage
from support.engine_server import RunningServer, start_server, wait_pool_full
from support.hf_reference import hf_greedy
from support.served_greedy import served_greedy

PROMPTS = [[3, 17, 42, 99, 7], list(range(10, 60)), [5] * 3, list(range(200, 290, 3))]
NEW_TOKENS = 10


def test_layers_split_evenly_the_first_stages_taking_the_rest() -> None:
    assert [(s.first_layer, s.end_layer) for s in (PipelineStage.of(i, 3, 8) for i in range(3))] == [
        (0, 3), (3, 6), (6, 8)
    ]
    assert PipelineStage.of(1, 2, 4).is_last and not PipelineStage.of(1, 2, 4).is_first
    with pytest.raises(ValueError, match=r"pipeline_parallel_size must be in \[1, 4\]"):
        PipelineStage.of(0, 5, 4)


@pytest.mark.parametrize("layout", [["--pp", "2"], ["--pp", "2", "--tp", "2"]], ids=["pp2", "pp2-tp2"])
async def test_pipeline_stages_give_transformers_greedy_tokens(tiny_model_dir: Path, layout: list[str]) -> None:
    # A small token budget: prompts are prefilled in chunks while other requests decode.
    server = start_server(tiny_model_dir, "--num-kv-blocks", "128", "--token-budget", "24", "--max-num-seqs", "8",
                          *layout)
    try:
        assert len(server.worker_pids) == 2 * (2 if "--tp" in layout else 1)
        served = await served_greedy(server, PROMPTS, NEW_TOKENS)
        assert served == {i: hf_greedy(tiny_model_dir, p, NEW_TOKENS) for i, p in enumerate(PROMPTS)}
        wait_pool_full(server)
    finally:
        assert server.stop() == 0


async def test_a_tied_head_on_the_last_stage_loads_the_embedding(tmp_path: Path) -> None:
    model = build_demo_model(tmp_path, architecture="Qwen2ForCausalLM", tie_word_embeddings=True, vocab_size=512,
                             hidden_size=64, intermediate_size=160, num_layers=2, num_heads=4, num_kv_heads=2)
    server = start_server(model, "--num-kv-blocks", "64", "--pp", "2")
    try:
        served = await served_greedy(server, PROMPTS, NEW_TOKENS)
        assert served == {i: hf_greedy(model, p, NEW_TOKENS) for i, p in enumerate(PROMPTS)}
    finally:
        server.stop()


@pytest.mark.parametrize("stage", [0, 1])
async def test_a_dead_worker_in_any_stage_fails_requests_and_stops_the_server(tiny_model_dir: Path, stage: int) -> None:
    doomed = start_server(tiny_model_dir, "--num-kv-blocks", "128", "--pp", "2", "--failure-exit-delay", "1")
    try:
        async with connect(doomed.host, doomed.rpc_port) as client:
            async with client.generate("keep going", SamplingParams(max_tokens=1500, ignore_eos=True)) as generation:
                async for _ in generation:
                    os.kill(doomed.worker_pids[stage], signal.SIGKILL)
                    break
                with pytest.raises(RequestError) as raised:
                    async for _ in generation:
                        pass
        assert raised.value.code == "engine_failed"
        assert f"model worker rank {stage} died" in raised.value.message
        assert await trio.to_thread.run_sync(doomed.process.wait, 30) == 1
    finally:
        doomed.stop()
