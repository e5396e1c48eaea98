"""The triton backend's decode-only steps at padded, fixed shapes (`prepare_decode`: what CUDA
graphs replay; run eagerly under the interpreter, replayed from captured graphs on a GPU): the
same tokens as its unpadded path and as the `reference` backend, logprobs close to both, and
padding rows that write only the padding block."""

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.wire.sampling_params import SamplingParams
from engine.wire.step import NewRequest, StepEntry, StepInput, TokenLogprobs
from engine.worker.decode_buckets import DecodeBucket
from engine.worker.model_runner import ModelRunner, ModelRunnerConfig
from engine_model.harness import generate, random_prompts
from paged_cases import DEVICE

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


def assert_logprobs_close(ours: list[TokenLogprobs | None], theirs: list[TokenLogprobs | None]) -> None:
    assert len(ours) == len(theirs)
    for mine, expected in zip(ours, theirs, strict=True):
        assert mine is not None and expected is not None
        assert mine.top_token_ids == expected.top_token_ids
        np.testing.assert_allclose(mine.top_logprobs, expected.top_logprobs, rtol=1e-4, atol=1e-4)


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


def test_padded_decodes_equal_the_unpadded_path_and_the_reference_backend(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the scheduler, requests arriving at different steps: decode batches of 1, 2 and 3
    rows run at padded sizes 1, 2 and 4, contexts crossing block boundaries."""
    prompts = random_prompts(2, [3, 17, 6], VOCAB_SIZE)
    sampling = [SamplingParams(temperature=0.0, max_tokens=5, logprobs=2)] * 3
    shape = dict(block_size=8, max_model_len=32, max_num_seqs=4)
    buckets: list[DecodeBucket] = []
    results = {}
    for name, backend, pad_decodes in (("padded", "triton", True), ("plain", "triton", False),
                                       ("reference", "reference", False)):
        each = runner(tiny_model, backend, **shape)
        each.init_kv_cache(16, pad_decodes=pad_decodes)
        if each.padded_decode is not None:
            run = each.padded_decode.run

            def noting_the_bucket(bucket: DecodeBucket) -> None:
                buckets.append(bucket)
                run(bucket)

            monkeypatch.setattr(each.padded_decode, "run", noting_the_bucket)
        results[name] = generate(
            each, prompts, 5, num_blocks=16, max_num_seqs=4, sampling=sampling, arrival_steps=[0, 1, 3]
        )
    assert {bucket.batch_size for bucket in buckets} == {1, 2, 4}
    assert results["padded"].outputs == results["plain"].outputs == results["reference"].outputs
    for request_id in range(len(prompts)):
        for other in ("plain", "reference"):
            assert_logprobs_close(results["padded"].logprobs[request_id], results[other].logprobs[request_id])
