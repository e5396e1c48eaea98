"""Fused residual-add + RMSNorm, SiLU-and-multiply and rotary embedding against their references
and against the engine's own layers (which the Hugging Face equivalence tests hold to
transformers)."""

import pytest
import torch
import torch.nn.functional as F

from engine.model_config import RopeConfig
from engine.worker.model.layers.norm import RMSNorm
from engine.worker.model.layers.rotary import RotaryEmbedding, apply_rotary, inverse_frequencies
from paged_cases import DEVICE, assert_close
from servekit_kernels import (
    rms_norm,
    rms_norm_reference,
    rotary_embedding,
    rotary_embedding_reference,
    silu_and_mul,
    silu_and_mul_reference,
)

DTYPES = [torch.float32, torch.float16]


def randn(seed: int, *shape: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(DEVICE, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden_size", [64, 200])
@pytest.mark.parametrize("with_residual", [False, True])
def test_rms_norm_matches_reference_and_the_engine_layer(dtype: torch.dtype, hidden_size: int, with_residual: bool) -> None:
    hidden, residual = randn(0, 5, hidden_size, dtype=dtype), randn(1, 5, hidden_size, dtype=dtype)
    layer = RMSNorm(hidden_size, 1e-5).to(DEVICE, dtype)
    with torch.no_grad():
        layer.weight.copy_(randn(2, hidden_size, dtype=dtype))
    given = residual if with_residual else None
    normalized, summed = rms_norm(hidden, layer.weight.detach(), 1e-5, given)
    for expected in (rms_norm_reference(hidden, layer.weight.detach(), 1e-5, given), layer(hidden, given)):
        assert_close(normalized, expected[0], dtype, half_limit=2e-3)
        assert torch.equal(summed, expected[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [160, 1500])  # one block per row, and two
def test_silu_and_mul_matches_reference(dtype: torch.dtype, width: int) -> None:
    gate_up = randn(3, 4, 2 * width, dtype=dtype)
    expected = F.silu(gate_up[:, :width].float()) * gate_up[:, width:].float()
    assert_close(silu_and_mul(gate_up), silu_and_mul_reference(gate_up), dtype, half_limit=2e-3)
    assert_close(silu_and_mul(gate_up).float(), expected, dtype, half_limit=2e-3)


LLAMA3 = RopeConfig(theta=500000.0, type="llama3", factor=8.0, original_max_position_embeddings=64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("rope", [RopeConfig(), LLAMA3], ids=["default", "llama3"])
def test_rotary_matches_reference_and_the_engine_layer(dtype: torch.dtype, head_dim: int, rope: RopeConfig) -> None:
    """Llama 3 scaling with a short original context, so all three frequency bands occur."""
    positions = torch.tensor([0, 1, 15, 16, 300, 2047], device=DEVICE)
    query, key = randn(4, 6, 8, head_dim, dtype=dtype), randn(5, 6, 2, head_dim, dtype=dtype)
    inv_freq = inverse_frequencies(head_dim, rope).to(DEVICE)
    expected = rotary_embedding_reference(query, key, positions, inv_freq)
    cos, sin = RotaryEmbedding(head_dim, 2048, rope).to(DEVICE)(positions, torch.float32)
    layer = apply_rotary(query.float(), key.float(), cos, sin)
    rotated = rotary_embedding(query.clone(), key.clone(), positions, inv_freq)
    for got, want, engine in zip(rotated, expected, layer, strict=True):
        assert_close(got, want, dtype, half_limit=2e-3)
        torch.testing.assert_close(got.float(), engine, rtol=2e-3, atol=2e-3)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match=r"gate_up must be \[num_tokens, 2 \* width\]"):
        silu_and_mul(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"inv_freq must be float32 \[32\] for head_dim 64"):
        rotary_embedding(torch.zeros(2, 4, 64), torch.zeros(2, 1, 64), torch.zeros(2), torch.zeros(16))
    with pytest.raises(ValueError, match=r"residual must match hidden \(2, 8\)"):
        rms_norm(torch.zeros(2, 8), torch.ones(8), 1e-5, torch.zeros(2, 4))
