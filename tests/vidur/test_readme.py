"""The config file documented in README.md is a working config."""

import re
import tomllib
from pathlib import Path

from vidur import OperatorPredictor, Simulator, plan_deployment, workload_for
from vidur.config import build_config

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_config_example_loads_and_runs(predictor: OperatorPredictor, data_dir: Path) -> None:
    section = README.read_text().split("### Config file (TOML or YAML)", 1)[1]
    example = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert example is not None
    data = tomllib.loads(example.group(1))
    data["workload"]["num_requests"] = 300
    config = build_config(data, traces_dir=data_dir / "traces")
    assert config.search.gpus == ("a100", "h100") and config.simulated_prefill_deadline
    simulator = Simulator(plan_deployment(config.deployment, predictor))
    result = simulator.run(workload_for(config.workload, simulator.deployment))
    assert int(result.requests["num_tokens"].sum()) == int(result.workload.output_tokens.sum())
