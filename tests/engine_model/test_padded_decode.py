"""Decode-only steps at padded shapes (the CUDA graphs' path, run eagerly on the CPU): the shapes
chosen, padding rows that neither write KV nor sample, and outputs equal to the unpadded path."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.wire.sampling_params import SamplingParams
from engine.wire.step import NewRequest, StepEntry, StepInput
from engine.worker.decode_buckets import DecodeBucket, DecodeBuckets, decode_batch_sizes, decode_widths
from engine.worker.model_runner import ModelRunner, ModelRunnerConfig
from harness import GREEDY, generate, note_padded_decodes, random_prompts

DEMO_SHAPE = dict(vocab_size=2048, hidden_size=256, intermediate_size=768, num_layers=4, num_heads=8, num_kv_heads=2)


def test_batch_sizes_step_by_8_then_16_and_end_at_max_num_seqs() -> None:
    assert decode_batch_sizes(1) == [1]
    assert decode_batch_sizes(6) == [1, 2, 4, 6]
    assert decode_batch_sizes(8) == [1, 2, 4, 8]
    assert decode_batch_sizes(40) == [1, 2, 4, 8, 16, 24, 32, 40]
    sizes = decode_batch_sizes(300)
    assert sizes[:6] == [1, 2, 4, 8, 16, 24] and sizes[-6:] == [240, 248, 256, 272, 288, 300]
    assert len(sizes) == 4 + 31 + 3
    with pytest.raises(ValueError, match="max_num_seqs must be at least 1, got 0"):
        decode_batch_sizes(0)


def test_widths_and_the_bucket_a_batch_gets() -> None:
    assert decode_widths(8, reads_pages=False) == [1, 2, 4, 8]
    assert decode_widths(17, reads_pages=False) == [1, 2, 4, 8, 16, 17]
    assert decode_widths(17, reads_pages=True) == [17]
    gathering = DecodeBuckets(max_num_seqs=128, max_blocks=512, block_size=16, reads_pages=False)
    assert gathering.choose(3, 9) == DecodeBucket(4, 16)
    assert gathering.choose(9, 1) == DecodeBucket(16, 1)
    assert gathering.choose(128, 32) == DecodeBucket(128, 32)
    # 128 rows x 64 blocks x 16 tokens is past the 65,536 context tokens a gathering graph may hold.
    assert gathering.choose(128, 33) is None
    assert gathering.choose(1, 512) == DecodeBucket(1, 512)
    assert gathering.choose(129, 1) is None and gathering.choose(1, 513) is None
    assert DecodeBucket(128, 64) not in gathering.all and DecodeBucket(64, 64) in gathering.all
    paging = DecodeBuckets(max_num_seqs=128, max_blocks=512, block_size=16, reads_pages=True)
    assert paging.choose(128, 33) == DecodeBucket(128, 512) and len(paging) == len(paging.batch_sizes) == 19


def prefill_then_decode(prompts: list[list[int]], sampling: SamplingParams, block_size: int) -> list[StepInput]:
    """Step 0 prefills every prompt (each in blocks of its own), step 1 decodes each once."""
    entries, first_block, blocks = [], 0, []
    for request_id, prompt in enumerate(prompts):
        num_blocks = len(prompt) // block_size + 1  # room for the decoded token
        blocks.append(range(first_block, first_block + num_blocks))
        entries.append(StepEntry(request_id, request_id, len(prompt), 0, True, blocks[-1]))
        first_block += num_blocks
    new = [NewRequest(request_id, prompt, sampling) for request_id, prompt in enumerate(prompts)]
    decodes = [StepEntry(request_id, request_id, 1, len(prompt), True) for request_id, prompt in enumerate(prompts)]
    return [StepInput.from_entries(0, entries, new), StepInput.from_entries(1, decodes)]


def test_padding_rows_write_only_the_padding_block_and_sample_nothing(model_factory: Callable[..., Path]) -> None:
    model_dir = model_factory(**DEMO_SHAPE)
    block_size, num_blocks = 4, 12
    prompts = random_prompts(1, [5, 9, 2], 2048)
    steps = prefill_then_decode(prompts, SamplingParams(temperature=0.0, max_tokens=8, logprobs=3), block_size)
    config = ModelRunnerConfig(model=str(model_dir), block_size=block_size, max_model_len=64, max_num_seqs=8)
    plain, padded = ModelRunner(config), ModelRunner(config)
    plain.init_kv_cache(num_blocks)
    padded.init_kv_cache(num_blocks, pad_decodes=True)
    assert padded.padded_decode is not None and plain.padded_decode is None
    assert padded.kv_caches[0].shape[1] == num_blocks + 1  # the padding block, past the scheduler's
    for runner in (plain, padded):
        runner.execute(steps[0])
    before = [cache.clone() for cache in padded.kv_caches]

    plain_output, padded_output = plain.execute(steps[1]), padded.execute(steps[1])

    # Three decodes ran at batch size 4: three tokens came back, none for the padding row.
    assert len(padded_output.sampled_token_ids) == 3 * 4 and len(padded_output.logprobs) == 3
    assert padded_output.sampled_token_ids == plain_output.sampled_token_ids
    # Each request's decoded token sits at position len(prompt) of its own blocks (2, 3 and 1 of them).
    first_blocks = [0, 2, 5]
    written = [(first + len(p) // block_size, len(p) % block_size) for first, p in zip(first_blocks, prompts)]
    for layer, (old, new, reference) in enumerate(zip(before, padded.kv_caches, plain.kv_caches, strict=True)):
        changed = (old != new).flatten(start_dim=3).any(dim=-1).any(dim=0)  # [blocks, block_size]
        expected = torch.zeros_like(changed)
        for block, offset in written:
            expected[block, offset] = True
        expected[num_blocks] = changed[num_blocks]
        assert torch.equal(changed, expected), f"layer {layer}: a slot outside the decodes' own was written"
        assert changed[num_blocks].any(), "the padding row wrote nothing: the padded path did not run"
        torch.testing.assert_close(new[:, :num_blocks], reference, rtol=1e-5, atol=1e-6)
    for ours, theirs in zip(padded_output.logprobs, plain_output.logprobs, strict=True):
        assert ours is not None and theirs is not None
        assert ours.top_token_ids == theirs.top_token_ids
        np.testing.assert_allclose(ours.top_logprobs, theirs.top_logprobs, rtol=1e-5, atol=1e-5)


def test_padded_eager_decodes_equal_the_unpadded_path(
    model_factory: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Greedy tokens and logprobs through the scheduler: requests arrive at different steps, so the
    decode batches grow and shrink through several padded sizes."""
    model_dir = model_factory(**DEMO_SHAPE)
    prompts = random_prompts(2, [3, 20, 11, 6, 27], 2048)
    sampling = [SamplingParams(temperature=0.0, max_tokens=6, logprobs=4)] * 5
    sampling[1] = GREEDY
    config = ModelRunnerConfig(model=str(model_dir), block_size=8, max_model_len=96, max_num_seqs=6)
    results = []
    buckets: list[DecodeBucket] = []
    for pad_decodes in (False, True):
        runner = ModelRunner(config)
        runner.init_kv_cache(64, pad_decodes=pad_decodes)
        note_padded_decodes(runner, buckets, monkeypatch)
        arrivals = [0, 0, 2, 4, 5]
        results.append(
            generate(runner, prompts, 6, num_blocks=64, max_num_seqs=6, sampling=sampling, arrival_steps=arrivals)
        )
    plain, padded = results
    assert padded.outputs == plain.outputs
    assert {bucket.batch_size for bucket in buckets} == {1, 2, 4}
    assert max(bucket.width for bucket in buckets) == 4  # 27 + 5 tokens: 4 blocks, padded to 4
    assert padded.logprobs.keys() == plain.logprobs.keys() == {0, 2, 3, 4}
    for request_id, expected in plain.logprobs.items():
        for ours, theirs in zip(padded.logprobs[request_id], expected, strict=True):
            assert ours.top_token_ids == theirs.top_token_ids
            np.testing.assert_allclose(ours.top_logprobs, theirs.top_logprobs, rtol=1e-5, atol=1e-5)
            assert ours.logprob == pytest.approx(theirs.logprob, abs=1e-5)


def test_graphs_are_off_on_the_cpu_and_for_backends_that_cannot_be_captured(tiny_llama: Path) -> None:
    cpu = ModelRunner(ModelRunnerConfig(model=str(tiny_llama)))
    assert cpu.graphs_off_reason() == "the cpu runs eagerly"
    cpu.init_kv_cache(4)
    assert cpu.padded_decode is None and cpu.cuda_graphs == "CUDA graphs off: the cpu runs eagerly"
    eager = ModelRunner(ModelRunnerConfig(model=str(tiny_llama), enforce_eager=True))
    assert eager.graphs_off_reason() == "enforce_eager is set"
    reference = ModelRunner(ModelRunnerConfig(model=str(tiny_llama), attention_backend="reference"))
    with pytest.raises(ValueError, match="an attention backend with a fixed-shape decode \\(not 'reference'\\)"):
        reference.init_kv_cache(4, pad_decodes=True)
