"""`[cpu_overheads]` fitted from an engine's iteration log: hand-made logs with known lines."""

from pathlib import Path

import pytest

from engine.core.iteration_log import IterationRecord
from vidur.cli import main
from vidur.config import load_config
from vidur.overheads_fit import fit_line, fit_overheads


def record(step: int, num_seqs: int, *, queued: bool = True, slow: float = 1.0) -> IterationRecord:
    """An iteration whose every cost is a known line in its sequences (`slow` scales one outlier)."""
    return IterationRecord(
        step_id=step,
        scheduled_at=step * 0.01,
        completed_at=step * 0.01 + 0.008,
        request_ids=list(range(num_seqs)),
        num_tokens=[1] * num_seqs,
        num_computed_tokens=[10] * num_seqs,
        produces_token=[True] * num_seqs,
        is_prefill=[False] * num_seqs,
        preempted_ids=[],
        queued=queued,
        schedule_s=(50e-6 + 2e-6 * num_seqs) * slow,
        apply_s=100e-6 + 4e-6 * num_seqs,
        delivery_s=30e-6,
        idle_s=20e-6,
        prepare_s=200e-6 + 1e-6 * num_seqs,
        forward_s=5e-3,
        execute_s=200e-6 + 1e-6 * num_seqs + 5e-3 + 80e-6 + 3e-6 * num_seqs,
    )


def test_each_overhead_is_its_line_and_an_outlier_moves_nothing() -> None:
    records = [record(i, n) for i, n in enumerate([1, 2, 4, 8, 16] * 5)]
    records.append(record(len(records), 4, slow=50.0))  # a descheduled engine, once
    fits = fit_overheads(records).fits
    expected = {
        "schedule": (50e-6, 2e-6),
        "prepare_inputs": (200e-6 + 20e-6, 1e-6),  # its inputs, and the wait for a step sent ahead
        "sample": (80e-6, 3e-6),
        "process_outputs": (130e-6, 4e-6),  # the outputs' delivery, then applying them
    }
    for name, (base, per_seq) in expected.items():
        assert fits[name].base_s == pytest.approx(base, rel=1e-6, abs=1e-12), name
        assert fits[name].per_seq_s == pytest.approx(per_seq, rel=1e-6, abs=1e-12), name


def test_a_step_sent_after_the_last_one_finished_waited_for_the_engine_too() -> None:
    """Without async scheduling the worker waited for the engine to apply and schedule: that
    part of its wait is the engine's, fitted there, not the worker's input preparation."""
    records = []
    for i, n in enumerate([1, 2, 4, 8] * 4):
        step = record(i, n, queued=False)
        previous_apply = records[-1].apply_s if records else 0.0
        step.idle_s = previous_apply + step.schedule_s + 20e-6
        step.scheduled_at = records[-1].completed_at + previous_apply if records else 0.0
        step.completed_at = step.scheduled_at + 0.008
        records.append(step)
    assert fit_overheads(records).fits["prepare_inputs"].base_s == pytest.approx(220e-6, rel=1e-6)


def test_a_line_never_goes_below_zero() -> None:
    falling = fit_line([1, 2, 3], [3.0, 2.0, 1.0])
    assert falling.per_seq_s == 0 and falling.base_s == 2.0
    steep = fit_line([1, 2, 3], [1.0, 3.0, 5.0])  # through (0, -1): the base is clipped to 0
    assert steep.base_s == 0 and steep.per_seq_s == pytest.approx(22 / 14)


def test_the_cli_prints_a_section_a_config_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.core.iteration_log import IterationLog, IterationLogHeader

    log_path = tmp_path / "iterations.jsonl"
    header = IterationLogHeader(
        model="m", device="cpu", dtype="float32", attention_backend="sdpa", tensor_parallel_size=1,
        pipeline_parallel_size=1, num_kv_blocks=64, scheduler={},
    )
    with IterationLog(log_path) as log:
        log.start(header)
        for i, n in enumerate([1, 2, 4, 8]):
            log.append(record(i, n))
    assert main(["fit-overheads", str(log_path)]) == 0
    section = capsys.readouterr().out
    (tmp_path / "overheads.toml").write_text(section)
    overheads = load_config(tmp_path / "overheads.toml", []).deployment.cpu_overheads
    assert overheads.schedule == pytest.approx((50e-6, 2e-6), rel=1e-3)
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["fit-overheads", str(tmp_path / "empty.jsonl")]) == 2
    assert "is empty" in capsys.readouterr().err
