"""metron's `engine` target against a real engine process: the same workload measured over the
msgspec socket (with the server's timestamps and scheduling delay) and over the OpenAI API."""

from pathlib import Path

import pytest

from metron.arrivals import ArrivalConfig
from metron.cli import main as metron_main
from metron.lengths import LengthConfig
from metron.runner import RunConfig, run_benchmark
from metron.targets.engine import EngineTarget, EngineTargetConfig
from metron.targets.openai import OpenAIConfig, OpenAITarget
from metron.workload import WorkloadConfig
from support.engine_server import RunningServer


def workload(tokenizer: Path) -> RunConfig:
    return RunConfig(
        workload=WorkloadConfig(
            num_requests=12,
            seed=3,
            arrivals=ArrivalConfig(kind="poisson", rate=20.0),
            lengths=LengthConfig(kind="uniform", prompt_tokens=96, output_tokens=24, min_prompt_tokens=8),
        ),
        tokenizer_path=str(tokenizer),
    )


def test_the_engine_target_reports_server_times_and_scheduling_delay(
    server: RunningServer, tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = workload(tiny_model_dir / "tokenizer.json")
    target = EngineTarget(EngineTargetConfig(host=server.host, port=server.rpc_port))
    outcome = run_benchmark(config, target, tmp_path / "engine")
    assert outcome.config["prompt_lengths_exact"] is True
    for record in outcome.records:
        assert record.outcome == "finished", record.error
        assert record.output_tokens == record.requested_output_tokens
        assert record.scheduling_delay_s is not None and 0 <= record.scheduling_delay_s < 1.0
    measured = outcome.load.measured
    for request in measured:
        assert request.server_token_times_s is not None
        assert len(request.server_token_times_s) == len(request.token_times_s)
        # The server stamps a token before the client receives it, and not long before.
        for server_time, client_time in zip(request.server_token_times_s, request.token_times_s, strict=True):
            assert -0.002 <= client_time - server_time < 0.5

    http = OpenAITarget(OpenAIConfig(url=server.url, model="tiny"))
    over_http = run_benchmark(config, http, tmp_path / "http")
    assert [r.output_tokens for r in over_http.records] == [r.output_tokens for r in outcome.records]
    assert [r.prompt_tokens for r in over_http.records] == [r.prompt_tokens for r in outcome.records]


def test_an_unreachable_engine_exits_with_the_target_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = metron_main(["run", "--target", "engine", "--engine", "127.0.0.1:1", "--output-dir", str(tmp_path)])
    assert code == 3
    assert "cannot connect to the engine at 127.0.0.1:1" in capsys.readouterr().err
