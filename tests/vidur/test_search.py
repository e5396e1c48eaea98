"""Capacity search: the expanding binary search, the cost frontier, and a real search over a small
space run in worker processes, cached, and resumed."""

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest
from metron.arrivals import ArrivalConfig
from metron.lengths import LengthConfig
from metron.slo import SloConfig
from metron.workload import WorkloadConfig

from vidur import DeploymentConfig, OperatorPredictor, ReplicaConfig, VidurConfig, gpus
from vidur.config import SearchConfig
from vidur.search.capacity import Probe, find_capacity
from vidur.search.report import format_table, write_search_results
from vidur.search.runner import SearchPoint, best_point, pareto_frontier, plan_search, run_search


def threshold_probe(capacity: float, calls: list[float]) -> object:
    def probe(qps: float) -> Probe:
        calls.append(qps)
        return Probe(qps, qps <= capacity, "")

    return probe


@pytest.mark.parametrize("capacity", [0.3, 1.0, 7.7, 100.0])
def test_expanding_binary_search_brackets_the_capacity(capacity: float) -> None:
    calls: list[float] = []
    result = find_capacity(threshold_probe(capacity, calls), 1.0, 1000.0, 0.05)  # type: ignore[arg-type]
    assert capacity * 0.95 <= result.capacity_qps <= capacity
    assert len(calls) == len(set(calls)) < 20
    assert not result.capped


def test_capacity_search_edges() -> None:
    never = find_capacity(lambda q: Probe(q, False, ""), 1.0, 100.0, 0.05)
    assert never.capacity_qps == 0.0 and len(never.probes) == 11
    always = find_capacity(lambda q: Probe(q, True, ""), 1.0, 100.0, 0.05)
    assert always.capacity_qps == 100.0 and always.capped


def point(name: str, cost: float, capacity: float) -> SearchPoint:
    return SearchPoint(name, {}, True, capacity_qps=capacity, cost_per_hour=cost, num_gpus=1)


def test_frontier_keeps_points_no_other_beats_on_cost_and_capacity() -> None:
    points = [point("a", 1, 1), point("b", 2, 3), point("c", 2, 2), point("d", 3, 2.5), point("e", 4, 8)]
    points.append(SearchPoint("f", {}, False, reason="does not fit"))
    assert [p.name for p in pareto_frontier(points)] == ["a", "b", "e"]
    best = best_point(points)
    assert best is not None and best.name == "e"  # $0.5/h per QPS
    table = format_table(points)
    assert "best: e" in table and "infeasible: does not fit" in table


def test_a_search_runs_in_workers_caches_and_resumes(
    predictor: OperatorPredictor, data_dir: Path, tmp_path: Path
) -> None:
    trace = str(data_dir / "traces" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv")
    config = VidurConfig(
        workload=WorkloadConfig(
            num_requests=120,
            seed=4,
            arrivals=ArrivalConfig(kind="poisson", rate=1.0),
            lengths=LengthConfig(kind="trace", trace_path=trace),
        ),
        slo=SloConfig(kind="tbt_ttft", p99_tbt_s=0.05, p90_ttft_s=1.0),
        search=SearchConfig(
            gpus=("h100", "a40"), tensor_parallel=(1, 2), initial_qps=4.0, max_qps=256.0, precision=0.2
        ),
    )
    config = replace(
        config, deployment=replace(config.deployment, replica=replace(config.deployment.replica, model="llama-3-8b"))
    )
    cache = tmp_path / "cache"
    points = run_search(config, predictor, cache_dir=cache, fingerprint="test", workers=2, progress=False)
    assert [p.name for p in points] == [
        "a40 tp=1 pp=1 x1 sarathi budget=512 seqs=128",
        "a40 tp=2 pp=1 x1 sarathi budget=512 seqs=128",
        "h100 tp=1 pp=1 x1 sarathi budget=512 seqs=128",
        "h100 tp=2 pp=1 x1 sarathi budget=512 seqs=128",
    ]
    by_name = {p.name: p for p in points}
    h100, a40 = (
        by_name["h100 tp=1 pp=1 x1 sarathi budget=512 seqs=128"],
        by_name["a40 tp=1 pp=1 x1 sarathi budget=512 seqs=128"],
    )
    assert all(p.feasible and p.capacity_qps > 0 for p in points)
    assert h100.capacity_qps > a40.capacity_qps
    assert by_name["h100 tp=2 pp=1 x1 sarathi budget=512 seqs=128"].cost_per_hour == pytest.approx(2 * 2.99)
    for p in points:
        passed = [float(probe["qps"]) for probe in p.probes if probe["passed"]]  # type: ignore[arg-type]
        assert max(passed) == p.capacity_qps

    files = set(cache.iterdir())
    started = time.perf_counter()
    again = run_search(config, predictor, cache_dir=cache, fingerprint="test", workers=2, progress=False)
    assert time.perf_counter() - started < 1.0  # every point came from the cache
    assert [p.as_dict() for p in again] == [p.as_dict() for p in points]
    assert set(cache.iterdir()) == files

    # An interrupted search kept its probes but not the unfinished points: resuming reuses them.
    point_files = {
        path for path in files if any(path.name.startswith(k) for k in _point_keys(config, predictor, cache))
    }
    for path in point_files:
        path.unlink()
    resumed = run_search(config, predictor, cache_dir=cache, fingerprint="test", workers=1, progress=False)
    assert [p.capacity_qps for p in resumed] == [p.capacity_qps for p in points]
    assert set(cache.iterdir()) == files

    write_search_results(points, tmp_path / "out", {"test": True})
    assert (tmp_path / "out" / "pareto.png").stat().st_size > 0
    assert "h100 tp=1" in (tmp_path / "out" / "search.csv").read_text()


def _point_keys(config: VidurConfig, predictor: OperatorPredictor, cache: Path) -> list[str]:
    from vidur.search.runner import plan_search

    jobs, _ = plan_search(config, config.search, predictor, cache, "test")
    return [job.point_key() for job in jobs]


def test_deployments_that_cannot_exist_are_reported_not_searched(predictor: OperatorPredictor, tmp_path: Path) -> None:
    base = VidurConfig()
    config = replace(
        base,
        deployment=replace(base.deployment, replica=replace(base.deployment.replica, model="llama-2-70b")),
        search=SearchConfig(gpus=("a100",), tensor_parallel=(1, 3)),
    )
    points = run_search(config, predictor, cache_dir=tmp_path, fingerprint="test", workers=1, progress=False)
    assert [(p.feasible, p.capacity_qps) for p in points] == [(False, 0.0), (False, 0.0)]
    assert "does not fit" in (points[0].reason or "") and "does not divide" in (points[1].reason or "")


def test_a_point_that_cannot_be_planned_is_listed_with_its_reason(data_dir: Path, tmp_path: Path) -> None:
    """A missing profile, a bad memory fraction or price fails that point, not the search."""
    table = tmp_path / "profiles" / "compute" / "h100" / "meta-llama" / "Llama-2-7b-hf" / "mlp.csv"
    table.parent.mkdir(parents=True)
    shutil.copy(data_dir / "profiling" / "compute" / "h100" / "meta-llama" / "Llama-2-7b-hf" / "mlp.csv", table)
    only_h100 = OperatorPredictor.train([tmp_path / "profiles"])
    config = replace(VidurConfig(), search=SearchConfig(gpus=("h100", "a100"), tensor_parallel=(1,)))
    jobs, infeasible = plan_search(config, config.search, only_h100, tmp_path / "cache", "test")
    assert [job.deployment.shape.gpu.name for job in jobs] == ["h100"]
    assert len(infeasible) == 1 and "no profiles calibrate" in (infeasible[0].reason or "")
    assert "on a100; profiled GPUs: h100" in (infeasible[0].reason or "")

    for bad_replica in (ReplicaConfig(memory_utilization=1.5), ReplicaConfig(gpu_price_per_hour=-1.0)):
        bad = replace(config, deployment=replace(config.deployment, replica=bad_replica))
        jobs, infeasible = plan_search(bad, bad.search, only_h100, tmp_path / "cache", "test")
        assert not jobs and len(infeasible) == 2


def test_each_gpu_type_is_priced_as_its_own(predictor: OperatorPredictor, tmp_path: Path) -> None:
    """A price set for the base config's GPU stays with that GPU; other types cost what the
    catalogue says."""
    space = SearchConfig(gpus=("h100", "a100", "h100_sxm"), tensor_parallel=(1, 2))
    for price, h100_price in ((None, 2.99), (10.0, 10.0)):
        base = VidurConfig(deployment=DeploymentConfig(replica=ReplicaConfig(gpu="H100", gpu_price_per_hour=price)))
        jobs, _ = plan_search(replace(base, search=space), space, predictor, tmp_path, "test")
        prices = {
            (job.deployment.config.replica.gpu, job.deployment.shape.tensor_parallel): job.deployment.cost_per_hour
            for job in jobs
        }
        assert prices == {
            ("h100", 1): pytest.approx(h100_price),
            ("h100", 2): pytest.approx(2 * h100_price),
            ("h100_sxm", 1): pytest.approx(h100_price),
            ("h100_sxm", 2): pytest.approx(2 * h100_price),
            ("a100", 1): pytest.approx(1.79),
            ("a100", 2): pytest.approx(2 * 1.79),
        }


def test_cached_points_are_keyed_by_file_contents_and_catalogue_entries(
    predictor: OperatorPredictor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = tmp_path / "lengths.csv"
    trace.write_text("num_prefill_tokens,num_decode_tokens\n100,20\n200,30\n")
    config = VidurConfig(
        workload=WorkloadConfig(lengths=LengthConfig(kind="trace", trace_path=str(trace))),
        search=SearchConfig(gpus=("h100",), tensor_parallel=(1,)),
    )

    def point_key() -> str:
        jobs, _ = plan_search(config, config.search, predictor, tmp_path / "cache", "test")
        return jobs[0].point_key()

    first = point_key()
    assert point_key() == first
    trace.write_text("num_prefill_tokens,num_decode_tokens\n100,20\n200,31\n")
    changed_trace = point_key()
    assert changed_trace != first
    monkeypatch.setitem(gpus.CATALOGUE, "h100", replace(gpus.CATALOGUE["h100"], price_per_hour=1.0))
    changed_price = point_key()
    assert changed_price not in (first, changed_trace)

    model = tmp_path / "model" / "config.json"
    model.parent.mkdir()
    shape = {"hidden_size": 1024, "intermediate_size": 2816, "num_attention_heads": 16, "num_hidden_layers": 4}
    model.write_text(json.dumps(shape | {"vocab_size": 32000, "architectures": ["LlamaForCausalLM"]}))
    config = replace(config, deployment=DeploymentConfig(replica=ReplicaConfig(model=str(model.parent))))
    with_model = point_key()
    model.write_text(json.dumps(shape | {"vocab_size": 32000, "architectures": ["MistralForCausalLM"]}))
    assert point_key() not in (with_model, changed_price)
