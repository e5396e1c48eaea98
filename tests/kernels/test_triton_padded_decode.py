"""The triton backend's decode-only steps at padded, fixed shapes (`prepare_decode`: what CUDA
graphs replay; run eagerly under the interpreter, replayed from captured graphs on a GPU): one
plan serves any lengths, the same tokens as its unpadded path and as the `reference` backend,
logprobs close to both, and padding rows that write only the padding block."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.wire.sampling_params import SamplingParams
from engine.wire.step import NewRequest, StepEntry, StepInput, TokenLogprobs
from engine.worker.attention import AttentionLayer, DecodeInputs, TritonAttention, kv_cache_shape
from engine.worker.decode_buckets import DecodeBucket
from engine.worker.model_runner import ModelRunner, ModelRunnerConfig
from engine_model.harness import generate, note_padded_decodes, random_prompts
from paged_cases import DEVICE
from servekit_kernels import default_num_splits, paged_decode_attention_reference

VOCAB_SIZE = 512
LOGPROBS = SamplingParams(temperature=0.0, max_tokens=8, logprobs=3)


def runner(model_dir: Path, backend: str, *, block_size: int, max_model_len: int, max_num_seqs: int) -> ModelRunner:
    config = ModelRunnerConfig(
        model=str(model_dir),
        device=DEVICE.type,
        attention_backend=backend,
        block_size=block_size,
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
    )
    return ModelRunner(config)


def assert_logprobs_close(ours: Sequence[TokenLogprobs | None], theirs: Sequence[TokenLogprobs | None]) -> None:
    assert len(ours) == len(theirs)
    for mine, expected in zip(ours, theirs, strict=True):
        assert mine is not None and expected is not None
        assert mine.top_token_ids == expected.top_token_ids
        np.testing.assert_allclose(mine.top_logprobs, expected.top_logprobs, rtol=1e-4, atol=1e-4)


def test_one_prepared_decode_serves_whatever_lengths_its_buffers_hold() -> None:
    """What a graph replay needs: the plan is made once from fixed-shape buffers, and each forward
    reads the lengths, slots and tables the buffers hold then, its contexts split as on a GPU."""
    layer = AttentionLayer(num_heads=4, num_kv_heads=1, head_dim=32, scale=32**-0.5)
    block_size, max_model_len, rows = 16, 1024, 2
    backend = TritonAttention(DEVICE, torch.float32, layer.head_dim, max_model_len)
    backend.num_programs = 64  # a GPU's count (multiprocessors x programs each), not the interpreter's 1
    assert default_num_splits(rows, layer.num_kv_heads, max_model_len, backend.num_programs) == 4
    generator = torch.Generator().manual_seed(0)
    width = max_model_len // block_size
    cache = torch.randn(kv_cache_shape(rows * width, block_size, 1, 32), generator=generator).to(DEVICE)
    tables = torch.randperm(rows * width, generator=generator).view(rows, width).to(DEVICE, torch.int32)
    seq_lens = torch.ones(rows, dtype=torch.int32, device=DEVICE)
    slots = torch.zeros(rows, dtype=torch.int64, device=DEVICE)
    plan = backend.prepare_decode(DecodeInputs(block_size, slots, seq_lens, tables))
    for lengths in ([300, 5], [1000, 1], [17, 640]):
        positions = torch.tensor(lengths, device=DEVICE) - 1
        seq_lens.copy_(positions + 1)
        slots.copy_(tables[torch.arange(rows), positions // block_size] * block_size + positions % block_size)
        query = torch.randn(rows, 4, 32, generator=generator).to(DEVICE)
        key, value = (torch.randn(rows, 1, 32, generator=generator).to(DEVICE) for _ in range(2))

        output = backend.forward(query, key, value, cache, plan, layer)

        assert torch.equal(cache[0].view(-1, 1, 32)[slots], key) and torch.equal(cache[1].view(-1, 1, 32)[slots], value)
        expected = paged_decode_attention_reference(query, cache[0], cache[1], tables, seq_lens, layer.scale)
        torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-5)


def test_padding_rows_write_only_the_padding_block(tiny_model: Path) -> None:
    """Three prefilled requests decode once at batch size 4: one padding row."""
    block_size, num_blocks = 4, 8
    prompts = random_prompts(1, [5, 9, 2], VOCAB_SIZE)
    first_blocks = [0, 2, 5]  # each prompt's blocks, with room for its decoded token
    prefill = StepInput.from_entries(
        0,
        [
            StepEntry(request_id, request_id, len(prompt), 0, True, range(first, first + len(prompt) // block_size + 1))
            for request_id, (prompt, first) in enumerate(zip(prompts, first_blocks, strict=True))
        ],
        [NewRequest(request_id, prompt, LOGPROBS) for request_id, prompt in enumerate(prompts)],
    )
    decode = StepInput.from_entries(
        1, [StepEntry(request_id, request_id, 1, len(prompt), True) for request_id, prompt in enumerate(prompts)]
    )
    shape = dict(block_size=block_size, max_model_len=32, max_num_seqs=4)
    padded, plain, reference = (runner(tiny_model, backend, **shape) for backend in ("triton", "triton", "reference"))
    padded.init_kv_cache(num_blocks, pad_decodes=True)
    plain.init_kv_cache(num_blocks, pad_decodes=False)
    reference.init_kv_cache(num_blocks)
    assert padded.padded_decode is not None and padded.padded_decode.buckets.widths == [8]  # reads pages: one width
    for each in (padded, plain, reference):
        each.execute(prefill)
    before = [cache.clone() for cache in padded.kv_caches]

    outputs = [each.execute(decode) for each in (padded, plain, reference)]

    assert len(outputs[0].sampled_token_ids) == 3 * 4 and len(outputs[0].logprobs) == 3
    assert outputs[0].sampled_token_ids == outputs[1].sampled_token_ids == outputs[2].sampled_token_ids
    assert_logprobs_close(outputs[0].logprobs, outputs[1].logprobs)
    assert_logprobs_close(outputs[0].logprobs, outputs[2].logprobs)
    written = [(first + len(p) // block_size, len(p) % block_size) for first, p in zip(first_blocks, prompts)]
    for layer, (old, new, expected) in enumerate(zip(before, padded.kv_caches, reference.kv_caches, strict=True)):
        changed = (old != new).flatten(start_dim=3).any(dim=-1).any(dim=0)  # [blocks, block_size]
        assert changed[num_blocks].any(), "the padding row wrote nothing: the padded path did not run"
        changed[num_blocks] = False
        slots = sorted(map(tuple, changed.nonzero().tolist()))
        assert slots == sorted(written), f"layer {layer}: a slot outside the decodes' own was written"
        torch.testing.assert_close(new[:, :num_blocks], expected, rtol=1e-5, atol=1e-5)


def test_padded_decodes_equal_the_reference_backend_through_the_scheduler(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests arriving at different steps: decode batches of 1, 2 and 3 rows run at padded
    sizes 1, 2 and 4, contexts crossing block boundaries."""
    prompts = random_prompts(2, [3, 17, 6], VOCAB_SIZE)
    sampling = [SamplingParams(temperature=0.0, max_tokens=5, logprobs=2)] * 3
    shape = dict(block_size=8, max_model_len=32, max_num_seqs=4)
    buckets: list[DecodeBucket] = []
    results = []
    for backend in ("triton", "reference"):
        each = runner(tiny_model, backend, **shape)
        each.init_kv_cache(16, pad_decodes=backend == "triton")
        note_padded_decodes(each, buckets, monkeypatch)
        results.append(
            generate(each, prompts, 5, num_blocks=16, max_num_seqs=4, sampling=sampling, arrival_steps=[0, 1, 3])
        )
    padded, reference = results
    assert {bucket.batch_size for bucket in buckets} == {1, 2, 4}
    assert padded.outputs == reference.outputs
    for request_id in range(len(prompts)):
        assert_logprobs_close(padded.logprobs[request_id], reference.logprobs[request_id])
