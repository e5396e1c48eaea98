"""Shared fixtures: the public profiles and traces in ../shared/data, a predictor trained once on
the default profiling roots."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from vidur import DeploymentConfig, OperatorPredictor, Simulator, Workload, plan_deployment, train_predictor
from vidur.config import default_profiling_roots

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "profiling").is_dir():
        raise RuntimeError(f"the shared data is missing: {DATA}")
    return DATA


@pytest.fixture(autouse=True)
def _predictor_cache_in_a_temporary_directory(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `vidur` command caches the trained predictor under $XDG_CACHE_HOME: not the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def predictor(data_dir: Path) -> OperatorPredictor:
    return train_predictor(default_profiling_roots(data_dir))


@pytest.fixture(scope="session")
def llama7b_h100(predictor: OperatorPredictor) -> Simulator:
    return Simulator(plan_deployment(DeploymentConfig(), predictor))


def poisson_workload(
    num_requests: int, rate: float, seed: int, prompt: tuple[int, int], output: tuple[int, int]
) -> Workload:
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / rate, num_requests))
    return Workload(
        ids=np.arange(num_requests),
        arrival_s=arrivals,
        prompt_tokens=rng.integers(prompt[0], prompt[1] + 1, num_requests),
        output_tokens=rng.integers(output[0], output[1] + 1, num_requests),
        warmup=np.zeros(num_requests, dtype=bool),
    )


WorkloadFactory = Callable[..., Workload]


@pytest.fixture(scope="session")
def make_workload() -> WorkloadFactory:
    """`make_workload(num_requests, rate, seed, prompt=(lo, hi), output=(lo, hi))`: Poisson
    arrivals, uniform lengths."""
    return poisson_workload
