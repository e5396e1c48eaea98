"""The hand-worked Rust scenarios, replayed through the Python binding."""

from engine.scheduler import Batch, Scheduler, SchedulerConfig


def make(policy: str, token_budget: int, num_blocks: int, **overrides: object) -> Scheduler:
    knobs: dict[str, object] = dict(
        policy=policy,
        token_budget=token_budget,
        max_num_seqs=4,
        max_model_len=16,
        block_size=4,
        num_blocks=num_blocks,
        watermark=0.0,
    )
    knobs.update(overrides)
    return Scheduler(SchedulerConfig(**knobs))  # type: ignore[arg-type]


def entries(batch: Batch) -> list[tuple[int, int, int, str]]:
    """(id, tokens, computed-before, kind): P a non-final prefill chunk, p a last chunk, D a decode."""
    kinds = {(True, False): "P", (True, True): "p"}
    return [
        (r.id, r.num_tokens, r.num_computed_tokens, kinds.get((r.is_prefill, r.produces_token), "D"))
        for r in batch.requests
    ]


def complete(scheduler: Scheduler, batch: Batch) -> list[tuple[int, str]]:
    tokens = [1000 + r.id for r in batch.requests if r.produces_token]
    finished = scheduler.update(batch, tokens)
    scheduler.check_invariants()
    return [(f.id, f.reason) for f in finished]


def step(scheduler: Scheduler, now: float, expected: list[tuple[int, int, int, str]]) -> list[tuple[int, str]]:
    batch = scheduler.schedule(now)
    assert entries(batch) == expected
    return complete(scheduler, batch)


def test_sarathi_piggybacks_prefill_chunks_on_decodes() -> None:
    s = make("sarathi", 8, 100)
    s.add_request(1, prompt_len=10, max_new_tokens=3)
    s.add_request(2, prompt_len=6, max_new_tokens=2)
    s.add_request(3, prompt_len=4, max_new_tokens=1, arrival_time=1.0)

    batch = s.schedule(0.0)
    assert entries(batch) == [(1, 8, 0, "P")]
    assert batch.requests[0].new_block_ids == [0, 1, 2]
    assert batch.num_producing == 0
    complete(s, batch)

    batch = s.schedule(0.5)
    assert entries(batch) == [(1, 2, 8, "p"), (2, 6, 0, "p")]
    assert batch.requests[1].new_block_ids == [3, 4]
    complete(s, batch)

    assert step(s, 1.0, [(1, 1, 10, "D"), (2, 1, 6, "D"), (3, 4, 0, "p")]) == [(2, "length"), (3, "length")]
    assert step(s, 2.0, [(1, 1, 11, "D")]) == [(1, "length")]
    assert s.num_free_blocks == 100 and len(s) == 0


def test_sarathi_preempts_the_newest_request_when_blocks_run_out() -> None:
    s = make("sarathi", 16, 4)
    s.add_request(1, prompt_len=5, max_new_tokens=8)
    s.add_request(2, prompt_len=5, max_new_tokens=8)
    step(s, 0.0, [(1, 5, 0, "p"), (2, 5, 0, "p")])
    for computed in (5, 6, 7):
        step(s, 0.0, [(1, 1, computed, "D"), (2, 1, computed, "D")])
    batch = s.schedule(0.0)
    assert entries(batch) == [(1, 1, 8, "D")]
    assert batch.preempted_ids == [2]
    complete(s, batch)
    assert s.waiting_ids() == [2]
    state = s.request_state(2)
    assert (state.is_running, state.num_computed_tokens, state.num_preemptions) == (False, 0, 1)


def test_vllm_stalls_decodes_while_prompts_prefill() -> None:
    s = make("vllm", 16, 100)
    for request_id, prompt, new in [(1, 10, 3), (2, 6, 2), (3, 8, 2)]:
        s.add_request(request_id, prompt_len=prompt, max_new_tokens=new)
    step(s, 0.0, [(1, 10, 0, "p"), (2, 6, 0, "p")])
    step(s, 0.0, [(3, 8, 0, "p")])
    assert step(s, 0.0, [(1, 1, 10, "D"), (2, 1, 6, "D"), (3, 1, 8, "D")]) == [(2, "length"), (3, "length")]


def test_orca_reserves_max_length_and_mixes_whole_prefills_with_decodes() -> None:
    s = make("orca", 16, 10)
    for request_id, prompt, new in [(1, 10, 6), (2, 6, 6), (3, 4, 4), (4, 4, 4)]:
        s.add_request(request_id, prompt_len=prompt, max_new_tokens=new)
    batch = s.schedule(0.0)
    assert entries(batch) == [(1, 10, 0, "p"), (2, 6, 0, "p")]
    assert [r.new_block_ids for r in batch.requests] == [[0, 1, 2, 3], [4, 5, 6]]
    complete(s, batch)
    step(s, 0.0, [(1, 1, 10, "D"), (2, 1, 6, "D"), (3, 4, 0, "p")])
    assert s.waiting_ids() == [4]


def test_faster_transformer_admits_only_when_the_batch_has_drained() -> None:
    s = make("faster_transformer", 16, 100, max_num_seqs=2)
    for request_id, new in [(1, 2), (2, 3), (3, 1)]:
        s.add_request(request_id, prompt_len=4, max_new_tokens=new)
    step(s, 0.0, [(1, 4, 0, "p"), (2, 4, 0, "p")])
    assert step(s, 0.0, [(1, 1, 4, "D"), (2, 1, 4, "D")]) == [(1, "length")]
    assert step(s, 0.0, [(2, 1, 5, "D")]) == [(2, "length")]
    assert step(s, 0.0, [(3, 4, 0, "p")]) == [(3, "length")]


def test_lightllm_admits_only_what_the_projected_peak_allows() -> None:
    s = make("lightllm", 32, 8, max_model_len=32, max_decode_iters_between_prefills=2)
    s.add_request(1, prompt_len=8, max_new_tokens=8)
    s.add_request(2, prompt_len=8, max_new_tokens=8)
    s.add_request(3, prompt_len=4, max_new_tokens=8)
    step(s, 0.0, [(1, 8, 0, "p"), (2, 8, 0, "p")])
    for computed in range(8, 14):
        step(s, 0.0, [(1, 1, computed, "D"), (2, 1, computed, "D")])
        assert s.waiting_ids() == [3]
    assert step(s, 0.0, [(1, 1, 14, "D"), (2, 1, 14, "D")]) == [(1, "length"), (2, "length")]
    step(s, 0.0, [(3, 4, 0, "p")])


def test_prefix_caching_reuses_a_finished_prompt() -> None:
    s = make("sarathi", 32, 16, max_model_len=64, enable_prefix_caching=True)
    s.add_request(1, prompt_token_ids=list(range(1, 11)), max_new_tokens=2)
    step(s, 0.0, [(1, 10, 0, "p")])
    step(s, 0.0, [(1, 1, 10, "D")])
    assert s.num_cached_blocks == 2
    s.add_request(2, prompt_token_ids=[*range(1, 9), 50, 51, 52], max_new_tokens=1)
    batch = s.schedule(0.0)
    assert entries(batch) == [(2, 3, 8, "p")]
    assert batch.requests[0].new_block_ids == [0, 1, 2]
    complete(s, batch)


def test_stop_and_abort_through_update_free_the_blocks() -> None:
    s = make("sarathi", 16, 20)
    for request_id in (1, 2, 3):
        s.add_request(request_id, prompt_len=4, max_new_tokens=10)
    batch = s.schedule(0.0)
    finished = s.update(batch, [7, 8, 9], finished_ids=[1], aborted_ids=[3])
    assert [(f.id, f.reason, f.num_output_tokens) for f in finished] == [(1, "stop", 1), (3, "aborted", 1)]
    assert finished[0].first_scheduled_at == 0.0
    assert s.running_ids() == [2]
    # Request 2 holds its prompt's one block; its output token gets a block at its next decode.
    assert s.num_used_blocks == 1
    batch = s.schedule(0.0)
    assert batch.requests[0].new_block_ids == [2]  # the most recently freed block (request 3's)
    s.check_invariants()
