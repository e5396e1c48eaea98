"""`cluster.router = "prefix_affinity"`: a request goes to the replica whose prefix cache holds
the most of its prompt, the least outstanding on ties; checked by hand on a tiny workload and on
metron's multi-turn sessions against the other routers."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from metron.arrivals import ArrivalConfig
from metron.lengths import LengthConfig
from metron.sessions import SessionConfig
from metron.workload import WorkloadConfig, generate_workload

from vidur import ClusterConfig, DeploymentConfig, OperatorPredictor, Simulator, Workload, plan_deployment
from vidur.cli import main
from vidur.deployment import ROUTERS
from vidur.errors import DeploymentError


def replicas(predictor: OperatorPredictor, router: str, num_replicas: int = 2) -> Simulator:
    base = DeploymentConfig()
    return Simulator(
        plan_deployment(
            dataclasses.replace(
                base,
                scheduler=dataclasses.replace(base.scheduler, enable_prefix_caching=True),
                cluster=ClusterConfig(num_replicas=num_replicas, router=router),
            ),
            predictor,
        )
    )


def test_a_turn_goes_to_the_replica_holding_its_conversation_though_it_is_busier(
    predictor: OperatorPredictor,
) -> None:
    # A (0) and B (1): 64-token prompts, 2 tokens out. F, G, H (2-4): 100 tokens out, 1 ms later.
    # 5 is A's next turn (A's 64 + 2, then 20 of its own), 50 ms after A ended. Nothing is cached
    # while 0-4 arrive, so every router but random places them as least_outstanding does: A, F, H
    # on replica 0, B, G on replica 1. When 5 comes, B has ended: replica 0 has 2 requests
    # outstanding (F, H), replica 1 one (G), but only replica 0 holds A's first 64 tokens (A
    # computed 65: 4 full blocks).
    workload = Workload(
        ids=np.arange(6),
        arrival_s=np.array([0.0, 0.0, 1e-3, 1e-3, 1e-3, 1e-3]),
        prompt_tokens=np.array([64, 64, 64, 64, 64, 86]),
        output_tokens=np.array([2, 2, 100, 100, 100, 2]),
        warmup=np.zeros(6, dtype=bool),
        follows=np.array([-1, -1, -1, -1, -1, 0]),
        think_time_s=np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.05]),
    )
    affinity = replicas(predictor, "prefix_affinity").run(workload)
    assert affinity.requests["replica"].tolist() == [0, 1, 0, 1, 0, 0]
    assert affinity.requests["finished_s"][1] < affinity.workload.arrival_s[5] < affinity.requests["finished_s"][2]
    assert affinity.cached_prompt_tokens().tolist() == [0, 0, 0, 0, 0, 64]  # type: ignore[union-attr]
    least = replicas(predictor, "least_outstanding").run(workload)
    assert least.requests["replica"].tolist() == [0, 1, 0, 1, 0, 1]
    assert least.cached_prompt_tokens().tolist() == [0] * 6  # type: ignore[union-attr]


def test_on_multi_turn_sessions_every_turn_stays_with_its_conversation(predictor: OperatorPredictor) -> None:
    config = WorkloadConfig(
        num_requests=200,
        seed=5,
        arrivals=ArrivalConfig(kind="poisson", rate=4.0),
        lengths=LengthConfig(
            kind="uniform", min_prompt_tokens=20, prompt_tokens=300, min_output_tokens=20, output_tokens=120
        ),
        sessions=SessionConfig(num_turns=4, think_time_s=2.0),
    )
    workload = Workload.from_requests(generate_workload(config))
    assert workload.follows is not None
    later = np.flatnonzero(workload.follows >= 0)
    hit_rates = {}
    for router in ROUTERS:
        result = replicas(predictor, router, num_replicas=4).run(workload)
        placed = result.requests["replica"]
        cached = result.cached_prompt_tokens()
        assert cached is not None and not result.rejections
        hit_rates[router] = cached.sum() / workload.prompt_tokens.sum()
        if router == "prefix_affinity":
            # No other replica holds any of a session's prompt (no system prompt, no evictions).
            assert (placed[later] == placed[workload.follows[later]]).all()
            assert len(set(placed.tolist())) == 4
    assert hit_rates["prefix_affinity"] > 1.5 * max(v for k, v in hit_rates.items() if k != "prefix_affinity")


def test_the_router_needs_the_prefix_cache(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(DeploymentError, match="needs scheduler.enable_prefix_caching = true"):
        DeploymentConfig(cluster=ClusterConfig(router="prefix_affinity"))
    args = ["simulate", "--data-dir", str(data_dir), "--num-requests", "10", "--router", "prefix_affinity"]
    assert main(args) == 2
    assert 'cluster.router = "prefix_affinity" routes by the replicas\' prefix caches' in capsys.readouterr().err
    assert main([*args, "--set", "scheduler.enable_prefix_caching=true", "--replicas", "2"]) == 0
