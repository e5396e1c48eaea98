"""metron's `engine` target against a real engine process: the same workload measured over the
msgspec socket (with the server's timestamps and scheduling delay) and over the OpenAI API."""

from pathlib import Path

import msgspec
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


def test_prompts_are_as_long_as_the_server_counts_them(
    server: RunningServer, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The tiny model's tokenizer adds BOS; a requested 2047-token prompt plus one output token
    fills the 2048-token context exactly, as the server counts (it would refuse one more)."""
    config = RunConfig(
        workload=WorkloadConfig(
            num_requests=6, seed=4, arrivals=ArrivalConfig(kind="poisson", rate=20.0),
            lengths=LengthConfig(kind="uniform", prompt_tokens=2047, output_tokens=1, min_prompt_tokens=1),
        ),
        tokenizer_path=str(tiny_model_dir / "tokenizer.json"),
    )
    for target in (EngineTarget(EngineTargetConfig(host=server.host, port=server.rpc_port)),
                   OpenAITarget(OpenAIConfig(url=server.url, model="tiny"))):
        outcome = run_benchmark(config, target, tmp_path / type(target).__name__)
        for record in outcome.records:
            assert record.outcome == "finished", record.error
            assert record.prompt_tokens == record.requested_prompt_tokens  # the server's own count


def test_profile_prefill_with_its_default_lengths_fits_the_engine(
    server: RunningServer, tiny_model_dir: Path, tmp_path: Path
) -> None:
    output = tmp_path / "prefill.json"
    code = metron_main(["profile-prefill", "--target", "engine", "--engine", f"{server.host}:{server.rpc_port}",
                        "--tokenizer", str(tiny_model_dir / "tokenizer.json"), "--samples", "1",
                        "--output", str(output)])
    assert code == 0
    profile = msgspec.json.decode(output.read_bytes())
    assert sorted(set(profile["prompt_tokens"])) == [128, 256, 512, 1024, 2047]


def test_an_unreachable_engine_exits_with_the_target_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = metron_main(["run", "--target", "engine", "--engine", "127.0.0.1:1", "--output-dir", str(tmp_path)])
    assert code == 3
    assert "cannot connect to the engine at 127.0.0.1:1" in capsys.readouterr().err
