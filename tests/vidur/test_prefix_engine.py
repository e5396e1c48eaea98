"""The simulator's prefix caching against the real engine's: the same shared-prefix, multi-turn
workload (metron's generators) through `python -m engine --enable-prefix-caching` and through
the simulator with the same scheduler knobs (block size, KV blocks, token budget) finds the same
cached prompt tokens in every request, evictions included: the scheduler is the same code.

Both get the same token ids: the simulator's synthetic prompts, sent to the engine as token-id
prompts. A later turn's prompt holds the turn before's prompt and output, then its own
message; the engine's outputs are the model's tokens where the simulator's are 0, so the
engine's later turns are built from what the engine answered (the same sharing structure). The
requests go one at a time (sessions 100 s apart, each turn after the last ended), so no count
depends on how long an iteration takes."""

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from engine.client import SamplingParams, connect
from metron.arrivals import ArrivalConfig
from metron.lengths import LengthConfig
from metron.sessions import SessionConfig
from metron.workload import WorkloadConfig, generate_workload

from support.engine_server import RunningServer, start_server
from vidur import DeploymentConfig, OperatorPredictor, ReplicaConfig, Simulator, Workload, plan_deployment

KNOBS = {"block_size": 16, "token_budget": 32, "max_num_seqs": 4, "max_model_len": 192}
NUM_KV_BLOCKS = 14  # a turn needs up to 9: other sessions' blocks are evicted, least recently freed first
WORKLOAD = WorkloadConfig(
    num_requests=12,
    seed=4,
    arrivals=ArrivalConfig(kind="constant", rate=0.1),
    lengths=LengthConfig(
        kind="uniform", min_prompt_tokens=5, prompt_tokens=40, min_output_tokens=2, output_tokens=12
    ),
    shared_prefix_tokens=37,
    sessions=SessionConfig(num_turns=3, think_time_s=35.0),
)


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from engine.demo_model import default_demo_model_dir

    return default_demo_model_dir()


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> Iterator[RunningServer]:
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in KNOBS.items()]
    running = start_server(model_dir, *flags, "--num-kv-blocks", str(NUM_KV_BLOCKS), "--enable-prefix-caching")
    yield running
    running.stop()


def test_the_simulator_finds_the_engines_cached_tokens_request_by_request(
    engine: RunningServer, model_dir: Path, predictor: OperatorPredictor
) -> None:
    workload = Workload.from_requests(generate_workload(WORKLOAD), WORKLOAD.shared_prefix_tokens)
    base = DeploymentConfig()
    config = dataclasses.replace(
        base,
        replica=ReplicaConfig(model=str(model_dir / "config.json"), gpu="h100", num_kv_blocks=NUM_KV_BLOCKS),
        scheduler=dataclasses.replace(base.scheduler, enable_prefix_caching=True, **KNOBS),  # type: ignore[arg-type]
    )
    result = Simulator(plan_deployment(config, predictor)).run(workload)
    assert not result.rejections
    simulated = result.cached_prompt_tokens()
    assert simulated is not None

    order = sorted(range(len(workload)), key=lambda i: result.workload.arrival_s[i])
    # The four sessions open before any goes on (so their turns compete for blocks), and the
    # simulated replica ends each request before the next is sent, as the engine will.
    follows = workload.follows
    assert follows is not None and (follows[order[:4]] == -1).all()
    finished, sent_at = result.requests["finished_s"][order], result.workload.arrival_s[order]
    assert (finished[:-1] < sent_at[1:]).all()
    sent: dict[int, list[int]] = {}  # what the engine got and answered, by workload index
    cached = {}

    async def send_in_order() -> None:
        async with connect(engine.host, engine.rpc_port) as client:
            for index in order:
                prompt = workload.prompt_token_ids(index)
                before = int(follows[index])
                if before >= 0:
                    history = len(workload.prompt_token_ids(before)) + int(workload.output_tokens[before])
                    prompt = sent[before] + prompt[history:]
                num_output = int(workload.output_tokens[index])
                sampling = SamplingParams(max_tokens=num_output, temperature=0.0, ignore_eos=True)
                with trio.fail_after(60):
                    _, output, finished = await client.complete(None, sampling, prompt_token_ids=prompt)
                assert len(output) == num_output
                sent[index] = prompt + output
                cached[index] = finished.num_cached_tokens

    trio.run(send_in_order)
    engine_cached = [cached[i] for i in order]
    assert engine_cached == [int(simulated[i]) for i in order]
    # The shared prefix's 2 full blocks (37 tokens), and conversations partly evicted by the others.
    assert engine_cached[0] == 0 and set(engine_cached) == {0, 32, 48, 64}
