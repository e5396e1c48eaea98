"""`--iteration-log FILE` through the served engine: the header names the scheduler the engine
really ran, and the records replay exactly the tokens the requests received."""

from pathlib import Path

import httpx
import pytest

from engine.core.iteration_log import read_iteration_log
from support.engine_server import start_server, wait_pool_full


def test_the_log_accounts_for_every_token_served(tiny_model_dir: Path, tmp_path: Path) -> None:
    log_path = tmp_path / "iterations.jsonl"
    server = start_server(
        tiny_model_dir, "--num-kv-blocks", "64", "--token-budget", "32", "--max-num-seqs", "8",
        "--iteration-log", str(log_path),
    )
    try:
        prompts = [[(3 * i + j) % 1000 + 1 for i in range(length)] for j, length in enumerate((5, 40, 70))]
        with httpx.Client(timeout=60) as client:
            for prompt in prompts:
                body = {"model": "tiny", "prompt": prompt, "max_tokens": 6, "temperature": 0, "ignore_eos": True}
                assert client.post(f"{server.url}/v1/completions", json=body).status_code == 200
        wait_pool_full(server)
        header, records = read_iteration_log(log_path)  # flushed when the engine went idle
    finally:
        assert server.stop() == 0
    assert header.scheduler["token_budget"] == 32 and header.scheduler["max_num_seqs"] == 8
    assert header.scheduler["num_blocks"] == header.num_kv_blocks == 64
    assert header.scheduler["async_scheduling"] is True and header.scheduler["max_batches_in_flight"] == 2
    assert header.device == "cpu" and header.attention_backend == "sdpa"
    assert Path(header.model) == tiny_model_dir.resolve()

    computed: dict[int, int] = {}
    produced: dict[int, int] = {}
    for record in records:
        assert sum(record.num_tokens) <= 32
        for request_id, num_tokens, num_computed, produces in zip(
            record.request_ids, record.num_tokens, record.num_computed_tokens, record.produces_token, strict=True
        ):
            assert num_computed == computed.get(request_id, 0)  # chunks follow one another
            computed[request_id] = num_computed + num_tokens
            produced[request_id] = produced.get(request_id, 0) + produces
        assert record.completed_at >= record.scheduled_at
        assert 0 < record.forward_s <= record.execute_s and 0 <= record.prepare_s <= record.execute_s
        assert record.schedule_s > 0 and record.apply_s > 0 and record.idle_s >= 0 and record.delivery_s > 0
    # Three requests, one after another: prompts of 5, 40 (two chunks of 32) and 70 (three) tokens,
    # then 6 output tokens each, the last of which is never run through the model.
    assert sorted(computed.values()) == [5 + 5, 40 + 5, 70 + 5]
    assert list(produced.values()) == [6, 6, 6]
    assert [record.step_id for record in records] == sorted(record.step_id for record in records)
    assert any(record.queued for record in records)  # async scheduling sent steps ahead


def test_an_unwritable_log_fails_before_serving(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="cannot write the iteration log"):
        start_server(tiny_model_dir, "--iteration-log", str(tmp_path / "missing" / "log.jsonl"), timeout_s=60)
