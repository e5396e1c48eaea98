"""The search's SLO verdict, computed from the simulator's columns, is metron's verdict on the
same run, value for value, for every SLO kind, on passing and failing runs alike, and on a run
cut at `max_simulated_s` as metron's runner judges a run it stopped early."""

import numpy as np
import pytest
from metron.deadlines import DeadlineConfig
from metron.slo import SloConfig, evaluate_slo
from metron.summary import summarize

from vidur import Simulator, Workload, simulated_prefill_model
from vidur.slo_check import slo_verdict

SLOS = [
    SloConfig(kind="deadline"),
    SloConfig(kind="deadline", max_miss_rate=0.01, p50_scheduling_delay_s=0.05),
    SloConfig(kind="tbt_ttft", p99_tbt_s=0.05, p90_ttft_s=1.0),
    SloConfig(kind="tbt_ttft", p99_tbt_s=0.5, p90_ttft_s=5.0, max_error_rate=0.5),
    SloConfig(kind="ttft_tpot", p90_ttft_s=0.5, p90_tpot_s=0.02),
    SloConfig(kind="ttft_tpot", p90_ttft_s=3.0, p90_tpot_s=0.1, p50_scheduling_delay_s=2.0),
]


def run_with_warmup_and_rejections(simulator: Simulator, workload: Workload, seed: int) -> Workload:
    """The workload with a few warm-up requests and a few too long for the replica."""
    rng = np.random.default_rng(seed)
    warmup = rng.random(len(workload)) < 0.05
    prompts = workload.prompt_tokens.copy()
    prompts[rng.choice(len(workload), 3, replace=False)] = 5000
    return Workload(workload.ids, workload.arrival_s, prompts, workload.output_tokens, warmup)


@pytest.mark.parametrize(("rate", "seed", "expected"), [(2.0, 0, True), (5.0, 1, None), (40.0, 2, False)])
def test_the_fast_verdict_is_metrons_verdict(
    llama7b_h100: Simulator, make_workload: object, rate: float, seed: int, expected: bool | None
) -> None:
    """Light load passes every SLO, overload fails every one; in between, whatever metron says."""
    base = make_workload(400, rate, seed, prompt=(20, 3000), output=(1, 300))  # type: ignore[operator]
    workload = run_with_warmup_and_rejections(llama7b_h100, base, seed)
    result = llama7b_h100.run(workload, record_iterations=False)
    assert len(result.rejections) == 3
    simulated = DeadlineConfig(prefill=simulated_prefill_model(llama7b_h100))
    for deadlines in (DeadlineConfig(tbt_s=0.05, ttft_s=1.0), simulated):
        records = result.records(deadlines)
        for slo in SLOS:
            full = evaluate_slo(summarize(records, slo), slo)
            fast = slo_verdict(result, deadlines, slo)
            assert fast == full, (slo, fast.describe(), full.describe())
            assert expected is None or fast.passed == expected, fast.describe()


def test_a_run_with_nothing_completed_fails_with_unknown_values(llama7b_h100: Simulator) -> None:
    prompts, outputs = np.array([5000, 6000]), np.ones(2, dtype=np.int64)
    workload = Workload(np.arange(2), np.zeros(2), prompts, outputs, np.zeros(2, dtype=bool))
    result = llama7b_h100.run(workload, record_iterations=False)
    for slo in SLOS:
        full = evaluate_slo(summarize(result.records(DeadlineConfig()), slo), slo)
        assert slo_verdict(result, DeadlineConfig(), slo) == full and not full.passed


def test_a_cut_run_fails_as_metrons_verdict_on_an_interrupted_run(
    llama7b_h100: Simulator, make_workload: object
) -> None:
    """Cut at 20 s, some requests are interrupted and the later ones never sent: metron pools the
    interrupted ones' first tokens and gaps, counts them as no error, and fails the run for the
    requests it did not measure, however good the figures."""
    base = make_workload(300, 8.0, 3, prompt=(20, 3000), output=(1, 300))  # type: ignore[operator]
    workload = run_with_warmup_and_rejections(llama7b_h100, base, 3)
    result = llama7b_h100.run(workload, record_iterations=False, max_simulated_s=20.0)
    records = result.records(DeadlineConfig())
    outcomes = [r.outcome for r in records if not r.warmup]
    assert result.is_cut and "interrupted" in outcomes and result.num_arrived < len(workload)
    assert "error" in outcomes  # a rejection arrived before the cut
    num_planned = int(np.count_nonzero(~workload.warmup))
    generous = [*SLOS, SloConfig(kind="tbt_ttft", p99_tbt_s=100.0, p90_ttft_s=100.0, max_error_rate=0.9)]
    for slo in generous:
        metrics = summarize(records, slo)
        full = evaluate_slo(metrics, slo, num_planned=num_planned)
        assert slo_verdict(result, DeadlineConfig(), slo) == full, (slo, full.describe())
        assert not full.passed and full.checks[-1].key == "num_unmeasured_requests"
    assert evaluate_slo(summarize(records, generous[-1]), generous[-1]).passed  # only the cut fails it
