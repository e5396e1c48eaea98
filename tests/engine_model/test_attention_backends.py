"""Paged attention backends agree with each other and with dense causal attention, on random
inputs with random block tables, mixed prefill chunks and decodes, GQA and sliding windows."""

import random
from dataclasses import dataclass, replace
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from engine.worker.attention import (
    AttentionBackend,
    AttentionLayer,
    AttentionMetadata,
    ReferenceAttention,
    SdpaAttention,
    kv_cache_shape,
    select_backend,
)
from engine.worker.attention.flash import flash_kernel_unsupported_reason, is_flash_attn_available

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
BACKEND_NAMES = ["reference", "sdpa"] + (["flash"] if is_flash_attn_available() else [])


def dense_attention(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, layer: AttentionLayer
) -> torch.Tensor:
    """One request, contiguous keys/values of its whole context; queries are its last tokens."""
    group = layer.num_heads // layer.num_kv_heads
    keys = keys.float().repeat_interleave(group, dim=1)
    values = values.float().repeat_interleave(group, dim=1)
    scores = torch.einsum("qhd,khd->hqk", query.float(), keys) * layer.scale
    seq_len, query_len = keys.shape[0], query.shape[0]
    query_positions = torch.arange(seq_len - query_len, seq_len, device=query.device)[:, None]
    key_positions = torch.arange(seq_len, device=query.device)[None, :]
    visible = key_positions <= query_positions
    if layer.sliding_window is not None:
        visible &= key_positions > query_positions - layer.sliding_window
    probabilities = torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1)
    return torch.einsum("hqk,khd->qhd", probabilities, values)


@dataclass
class Case:
    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    cache: torch.Tensor
    """Per request: the keys and values of its whole context."""
    contexts: list[tuple[torch.Tensor, torch.Tensor]]
    tables: list[list[int]]
    metadata: AttentionMetadata

    def run(self, backend: AttentionBackend[Any], layer: AttentionLayer) -> torch.Tensor:
        prepared = backend.prepare(self.metadata)
        return backend.forward(self.query, self.key, self.value, self.cache, prepared, layer)


def random_case(seed: int, layer: AttentionLayer, block_size: int, dtype: torch.dtype) -> Case:
    """Up to 6 requests, each a decode or a chunk of random length after a random cached prefix."""
    rng = random.Random(seed)
    query_lens, seq_lens = [], []
    for _ in range(rng.randint(1, 6)):
        seq_len = rng.randint(1, 70)
        seq_lens.append(seq_len)
        query_lens.append(1 if rng.random() < 0.5 else rng.randint(1, seq_len))
    return make_case(seed, query_lens, seq_lens, layer, block_size, dtype)


def make_case(
    seed: int,
    query_lens: list[int],
    seq_lens: list[int],
    layer: AttentionLayer,
    block_size: int,
    dtype: torch.dtype,
    reserved_blocks: int = 0,
) -> Case:
    """Random keys, values and queries; each block table holds `reserved_blocks` more blocks than
    its context needs (random data in them), as a policy reserving the longest output leaves it."""
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    num_blocks = sum(-(-n // block_size) + reserved_blocks for n in seq_lens) + 5
    free = list(range(num_blocks))
    rng.shuffle(free)
    tables = [[free.pop() for _ in range(-(-n // block_size) + reserved_blocks)] for n in seq_lens]

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(DEVICE, dtype)

    kv_shape = (layer.num_kv_heads, layer.head_dim)
    contexts = [(randn(n, *kv_shape), randn(n, *kv_shape)) for n in seq_lens]
    cache = randn(*kv_cache_shape(num_blocks, block_size, *kv_shape))
    for (keys, values), table, seq_len, query_len in zip(contexts, tables, seq_lens, query_lens, strict=True):
        for position in range(seq_len - query_len):  # the cached prefix; forward writes the new tokens
            block, offset = table[position // block_size], position % block_size
            cache[0, block, offset] = keys[position]
            cache[1, block, offset] = values[position]
    new = list(zip(contexts, seq_lens, query_lens, strict=True))
    return Case(
        query=randn(sum(query_lens), layer.num_heads, layer.head_dim),
        key=torch.cat([keys[n - q :] for (keys, _), n, q in new]),
        value=torch.cat([values[n - q :] for (_, values), n, q in new]),
        cache=cache,
        contexts=contexts,
        tables=tables,
        metadata=AttentionMetadata.build(
            query_lens=query_lens, seq_lens=seq_lens, block_tables=tables, block_size=block_size, device=DEVICE
        ),
    )


LAYERS = [
    AttentionLayer(num_heads=4, num_kv_heads=4, head_dim=16, scale=0.25),
    AttentionLayer(num_heads=8, num_kv_heads=2, head_dim=32, scale=32**-0.5),
    AttentionLayer(num_heads=6, num_kv_heads=1, head_dim=8, scale=0.3, sliding_window=9),
]


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
@pytest.mark.parametrize("layer", LAYERS, ids=["mha", "gqa", "mqa-window"])
@pytest.mark.parametrize("block_size", [1, 4, 16])
@pytest.mark.parametrize("seed", range(4))
def test_backend_matches_dense_attention(backend_name: str, layer: AttentionLayer, block_size: int, seed: int) -> None:
    dtype = torch.float16 if backend_name == "flash" else torch.float32  # flash-attn takes 16-bit data only
    tolerance = 2e-3 if dtype == torch.float16 else 1e-5
    case = random_case(seed, layer, block_size, dtype)
    backend = select_backend(backend_name, device=DEVICE, dtype=dtype, head_dim=layer.head_dim, block_size=block_size)
    output = case.run(backend, layer)

    starts = case.metadata.query_start_loc.tolist()
    for row, (keys, values) in enumerate(case.contexts):
        rows = slice(starts[row], starts[row + 1])
        expected = dense_attention(case.query[rows], keys, values, layer)
        torch.testing.assert_close(output[rows].float(), expected, rtol=tolerance, atol=tolerance)
    # The new tokens' keys and values landed in their slots.
    flat_cache = case.cache.flatten(1, 2)
    torch.testing.assert_close(flat_cache[0, case.metadata.slot_mapping], case.key)
    torch.testing.assert_close(flat_cache[1, case.metadata.slot_mapping], case.value)


def test_backends_agree_in_bfloat16() -> None:
    layer = LAYERS[1]
    reference = random_case(11, layer, 4, torch.bfloat16).run(ReferenceAttention(), layer)
    sdpa = random_case(11, layer, 4, torch.bfloat16).run(SdpaAttention(), layer)
    torch.testing.assert_close(reference.float(), sdpa.float(), rtol=2e-2, atol=2e-2)


def test_flash_needs_ampere_16_bit_data_and_a_head_dim_it_supports() -> None:
    assert flash_kernel_unsupported_reason((8, 0), torch.bfloat16, 128) is None
    assert flash_kernel_unsupported_reason((9, 0), torch.float16, 256) is None
    for capability in ((7, 5), (7, 0), (6, 1)):  # T4, V100, P40: `auto` falls back to sdpa
        reason = flash_kernel_unsupported_reason(capability, torch.float16, 128)
        assert reason == f"it needs a GPU of compute capability 8.0 or newer, not {capability[0]}.{capability[1]}"
    assert flash_kernel_unsupported_reason((8, 6), torch.float32, 128) == (
        "it takes float16 or bfloat16 only, not torch.float32"
    )
    assert "head_dim" in str(flash_kernel_unsupported_reason((8, 9), torch.bfloat16, 100))


def test_backend_selection() -> None:
    def select(name: str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> str:
        return select_backend(name, device=torch.device(device), dtype=dtype, head_dim=64, block_size=16).name

    assert select("auto") == "sdpa"
    assert select("reference") == "reference"
    with pytest.raises(ValueError, match="'flash' cannot run: it runs on CUDA only, not on cpu"):
        select("flash")
    with pytest.raises(ValueError, match="unknown attention backend 'xformers'"):
        select("xformers")
    if torch.cuda.is_available():
        assert select("auto", "cuda", torch.float32) == "sdpa"  # flash-attn takes 16-bit data only
        assert select("auto", "cuda", torch.bfloat16) == ("flash" if is_flash_attn_available() else "sdpa")


@pytest.mark.parametrize("layer", LAYERS, ids=["mha", "gqa", "mqa-window"])
def test_sdpa_decode_gathers_only_the_longest_decode_context(layer: AttentionLayer) -> None:
    """Block tables reserved far past the contexts (orca, faster_transformer) change nothing, and
    decodes gather only the blocks of the longest decode context, even beside a longer prefill."""
    block_size, query_lens, seq_lens = 4, [1, 1, 12, 1], [9, 3, 40, 7]
    reserved = make_case(5, query_lens, seq_lens, layer, block_size, torch.float32, reserved_blocks=60)
    trimmed = [table[: -(-n // block_size)] for table, n in zip(reserved.tables, seq_lens, strict=True)]
    exact = replace(
        reserved,
        cache=reserved.cache.clone(),
        tables=trimmed,
        metadata=AttentionMetadata.build(
            query_lens=query_lens, seq_lens=seq_lens, block_tables=trimmed, block_size=block_size, device=DEVICE
        ),
    )
    backend = SdpaAttention()
    assert backend.prepare(reserved.metadata).decode_block_tables.shape == (3, 3)  # ceil(9 / 4) blocks
    assert torch.equal(reserved.run(backend, layer), exact.run(backend, layer))


def test_sdpa_builds_context_slots_for_prefill_rows_only(monkeypatch: pytest.MonkeyPatch) -> None:
    layer = LAYERS[1]
    case = make_case(3, [1, 1, 12, 1, 5], [300, 280, 20, 310, 5], layer, 16, torch.float32)
    all_slots = case.metadata.context_slots()
    torch.testing.assert_close(  # a subset of rows: their slices of every request's slots, in order given
        torch.from_numpy(case.metadata.context_slots([4, 2])),
        torch.from_numpy(all_slots[[*range(910, 915), *range(580, 600)]]),
    )
    slots_built: list[int] = []
    context_slots = AttentionMetadata.context_slots

    def spy(metadata: AttentionMetadata, rows: Any = None) -> Any:
        slots = context_slots(metadata, rows)
        slots_built.append(len(slots))
        return slots

    monkeypatch.setattr(AttentionMetadata, "context_slots", spy)
    SdpaAttention().prepare(case.metadata)
    assert slots_built == [20 + 5]


def _sdpa_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The keyword arguments of every `scaled_dot_product_attention` call from now on."""
    calls: list[dict[str, Any]] = []
    sdpa = F.scaled_dot_product_attention

    def spy(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(kwargs)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    return calls


def test_sdpa_masked_calls_fold_query_groups_instead_of_enable_gqa(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA, `enable_gqa` keeps a masked call off the memory-efficient kernel."""
    calls = _sdpa_calls(monkeypatch)
    prepare = SdpaAttention.prepare

    def as_on_cuda(self: SdpaAttention, metadata: Any) -> Any:
        plan = prepare(self, metadata)
        plan.additive_prefill_masks = False  # boolean masks for SDPA, as on CUDA
        return plan

    monkeypatch.setattr(SdpaAttention, "prepare", as_on_cuda)
    layer = LAYERS[1]
    case = make_case(8, [1, 7, 1, 10], [30, 19, 12, 10], layer, 4, torch.float32)
    output = case.run(SdpaAttention(), layer)
    masked = [call for call in calls if call.get("attn_mask") is not None]
    assert len(masked) == 2 and not any(call.get("enable_gqa") for call in masked)  # the decodes, the chunk
    expected = case.run(ReferenceAttention(), layer)
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sdpa_on_the_cpu_computes_a_chunk_after_its_prefix_by_matmul(
    monkeypatch: pytest.MonkeyPatch, layer: Any, dtype: torch.dtype
) -> None:
    """A masked SDPA call on the CPU runs the math kernel, whose wholly-masked-row checks cost a
    fifth of a chunk step; the chunk is computed with its additive mask instead, the same values."""
    calls = _sdpa_calls(monkeypatch)
    # A chunk of 7 after 12 cached tokens, one of 10 starting its sequence, two decodes.
    case = make_case(8, [1, 7, 1, 10], [30, 19, 12, 10], layer, 4, dtype)
    output = case.run(SdpaAttention(), layer)
    masked = [call for call in calls if call.get("attn_mask") is not None]
    assert len(masked) == 1 and masked[0]["attn_mask"].dtype == torch.bool  # the decodes only
    # The chunk that starts its sequence, plainly causal unless the sliding window cuts it.
    assert sum(call.get("is_causal", False) for call in calls) == (layer.sliding_window is None)
    expected = case.run(ReferenceAttention(), layer)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(output, expected, rtol=tolerance, atol=tolerance)
