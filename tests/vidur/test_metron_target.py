"""metron's `vidur` target: metron drives a simulated deployment through its own load generator,
and the report matches vidur's own run of the same workload."""

from pathlib import Path

import pytest
import trio
from metron.arrivals import ArrivalConfig
from metron.deadlines import DeadlineConfig
from metron.lengths import LengthConfig
from metron.load_generator import LoadConfig
from metron.runner import RunConfig
from metron.summary import summarize
from metron.targets.base import TargetError
from metron.targets.vidur import VidurTarget
from metron.workload import WorkloadConfig, generate_workload

from support.virtual_clock import measure_on_a_virtual_clock
from vidur import Simulator, Workload

WORKLOAD = WorkloadConfig(
    num_requests=60,
    num_warmup_requests=5,
    seed=8,
    arrivals=ArrivalConfig(kind="poisson", rate=6.0),
    lengths=LengthConfig(kind="uniform", prompt_tokens=1500, output_tokens=80),
)


def test_metron_reports_a_simulated_run_exactly_as_vidur_does(llama7b_h100: Simulator) -> None:
    requests = generate_workload(WORKLOAD)
    target = VidurTarget(llama7b_h100, requests)
    deadlines = DeadlineConfig(tbt_s=0.03, ttft_s=0.5)
    config = RunConfig(workload=WORKLOAD, deadlines=deadlines, load=LoadConfig(spin_s=0.0, start_delay_s=0.0))
    outcome = measure_on_a_virtual_clock(config, target)
    simulated = llama7b_h100.run(Workload.from_requests(requests)).records(deadlines)

    measured = outcome.records
    assert [r.id for r in measured] == [r.id for r in simulated]
    for real, sim in zip(measured, simulated, strict=True):
        assert real.token_times_s == pytest.approx(sim.token_times_s, abs=1e-9)
        assert real.scheduling_delay_s == pytest.approx(sim.scheduling_delay_s, abs=1e-9)
        assert (real.outcome, real.missed_deadlines, real.warmup) == (sim.outcome, sim.missed_deadlines, sim.warmup)
    ours, theirs = summarize(simulated), outcome.metrics
    for key in ("ttft_s.p50", "tbt_s.p99", "fluidity_index.mean", "output_token_throughput_per_s"):
        assert theirs[key] == pytest.approx(ours[key], rel=1e-6)
    assert outcome.config["target"]["kind"] == "vidur"


def test_an_impossible_deployment_is_a_target_error(data_dir: Path) -> None:
    with pytest.raises(TargetError, match="vidur cannot simulate this deployment: .* does not fit"):
        VidurTarget.from_config(None, ["replica.model=llama-2-70b", "replica.gpu=a40"], data_dir, [])


def test_streaming_before_check_fails_clearly(llama7b_h100: Simulator) -> None:
    target = VidurTarget(llama7b_h100, generate_workload(WORKLOAD))

    async def stream() -> None:
        from metron.targets.base import StreamRequest

        await target.stream(StreamRequest(id=0, prompt="", prompt_tokens=1, output_tokens=1), None)  # type: ignore[arg-type]

    with pytest.raises(TargetError, match="only after check"):
        trio.run(stream)
