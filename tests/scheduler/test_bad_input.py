"""Every bad input gets its own exception with a clear message, and the scheduler keeps working."""

import pytest

from engine.scheduler import (
    DuplicateRequestError,
    InvalidConfigError,
    InvalidOutputsError,
    InvalidRequestError,
    Scheduler,
    SchedulerConfig,
    SchedulerError,
    TooManyBatchesInFlightError,
    UnknownRequestError,
)


def small() -> Scheduler:
    return Scheduler(
        SchedulerConfig(token_budget=8, max_num_seqs=4, max_model_len=16, block_size=4, num_blocks=10, watermark=0.0)
    )


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"token_budget": 2, "max_num_seqs": 4}, "token_budget (2) must be at least max_num_seqs (4)"),
        ({"num_blocks": 0}, "num_blocks must be at least 1"),
        ({"block_size": 0}, "block_size must be at least 1"),
        ({"block_size": -1}, "block_size must be in 0..=4294967295, got -1"),
        ({"watermark": 1.0}, "watermark must be in [0, 1)"),
        ({"policy": "fifo"}, "unknown policy \"fifo\""),
        ({"order": "lifo"}, "unknown order \"lifo\""),
        ({"policy": "vllm", "token_budget": 512, "max_model_len": 4096}, "does not chunk prefills"),
        ({"dynamic_chunking": (1024, 4096, 4), "token_budget": 512}, "min_chunk_size"),
    ],
)
def test_invalid_configs_name_the_bad_knob(knobs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidConfigError) as raised:
        SchedulerConfig(**knobs)  # type: ignore[arg-type]
    assert message in str(raised.value)
    assert isinstance(raised.value, SchedulerError) and isinstance(raised.value, ValueError)


def test_defaults_follow_the_policy() -> None:
    assert SchedulerConfig().token_budget == 512
    assert SchedulerConfig(policy="vllm", max_model_len=2048).token_budget == 2048


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"prompt_len": 17, "max_new_tokens": 1}, InvalidRequestError, "17 tokens, more than max_model_len (16)"),
        ({"prompt_len": 0, "max_new_tokens": 1}, InvalidRequestError, "the prompt is empty"),
        ({"prompt_len": 4, "max_new_tokens": 0}, InvalidRequestError, "max_new_tokens must be at least 1"),
        ({"prompt_len": 4, "max_new_tokens": -5}, InvalidRequestError, "max_new_tokens must be in"),
        ({"max_new_tokens": 3}, InvalidRequestError, "give prompt_len or prompt_token_ids"),
        ({"prompt_token_ids": [1, -2], "max_new_tokens": 3}, InvalidRequestError, "a prompt token id must be in"),
        ({"prompt_len": 3, "prompt_token_ids": [1, 2], "max_new_tokens": 3}, InvalidRequestError, "2 tokens but"),
        ({"prompt_len": 4, "max_new_tokens": 1, "arrival_time": float("nan")}, InvalidRequestError, "finite"),
    ],
)
def test_bad_requests_are_rejected_and_the_scheduler_keeps_serving(
    arguments: dict[str, object], error: type[Exception], message: str
) -> None:
    s = small()
    s.add_request(1, prompt_len=4, max_new_tokens=2)
    with pytest.raises(error) as raised:
        s.add_request(2, **arguments)  # type: ignore[arg-type]
    assert message in str(raised.value)
    assert 2 not in s and len(s) == 1
    batch = s.schedule(0.0)
    assert batch.request_ids == [1]
    s.update(batch, [5])
    s.check_invariants()


def test_a_prompt_bigger_than_the_whole_cache_is_rejected() -> None:
    config = SchedulerConfig(token_budget=8, max_num_seqs=4, max_model_len=64, block_size=4, num_blocks=3)
    s = Scheduler(config)
    with pytest.raises(InvalidRequestError, match="needs 4 KV blocks but the cache admits at most 3"):
        s.add_request(1, prompt_len=13, max_new_tokens=1)
    # The config tells the same, for a caller that checks before it submits (the engine's front-end).
    assert config.prompt_refusal(13) == "the prompt needs 4 KV blocks but the cache admits at most 3"
    assert config.prompt_refusal(65) == "the prompt has 65 tokens, more than max_model_len (64)"
    assert config.prompt_refusal(12) is None
    s.add_request(2, prompt_len=12, max_new_tokens=1)


def test_duplicate_and_unknown_ids() -> None:
    s = small()
    s.add_request(1, prompt_len=4, max_new_tokens=2)
    with pytest.raises(DuplicateRequestError, match="request id 1 is already in the scheduler"):
        s.add_request(1, prompt_len=4, max_new_tokens=2)
    with pytest.raises(UnknownRequestError, match="request id 9 is not in the scheduler"):
        s.abort(9)
    with pytest.raises(UnknownRequestError):
        s.block_table(9)
    with pytest.raises(InvalidRequestError, match="non-negative"):
        s.abort(-1)
    assert s.abort(1).reason == "aborted"
    assert len(s) == 0


def test_outputs_that_do_not_match_the_batch_change_nothing() -> None:
    s = small()
    s.add_request(1, prompt_len=4, max_new_tokens=3)
    batch = s.schedule(0.0)
    with pytest.raises(InvalidOutputsError, match="expects 1 sampled tokens"):
        s.update(batch, [1, 2])
    with pytest.raises(InvalidOutputsError, match="a sampled token id must be in"):
        s.update(batch, [-7])
    with pytest.raises(UnknownRequestError):
        s.update(batch, [1], finished_ids=[42])
    with pytest.raises(TooManyBatchesInFlightError, match="call update"):
        s.schedule(0.0)
    with pytest.raises(TypeError):
        s.update(batch, "abc")  # type: ignore[arg-type]
    assert s.request_state(1).num_computed_tokens == 0
    s.update(batch, [1])
    with pytest.raises(InvalidOutputsError, match="not awaiting outputs"):
        s.update(batch, [1])
    with pytest.raises(InvalidOutputsError, match="not awaiting outputs"):
        small().update(batch, [1])
    assert s.request_state(1).num_output_tokens == 1
    s.check_invariants()


def test_a_batch_outlives_an_abort_of_its_request() -> None:
    s = small()
    s.add_request(1, prompt_len=4, max_new_tokens=3)
    s.add_request(2, prompt_len=4, max_new_tokens=3)
    batch = s.schedule(0.0)
    s.abort(1)
    s.add_request(1, prompt_len=4, max_new_tokens=3)
    assert s.update(batch, [1, 2]) == []
    assert s.request_state(1).num_computed_tokens == 0
    assert s.request_state(2).num_output_tokens == 1
    s.check_invariants()
