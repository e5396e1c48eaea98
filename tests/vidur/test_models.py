"""Hugging Face configs become model shapes: an explicit head_dim is kept through the layer
shape, the memory plan and attention; a mixture of experts is refused by name."""

import json
from pathlib import Path

import numpy as np
import pytest

from vidur import DeploymentConfig, ModelConfigError, OperatorPredictor, ReplicaConfig, get_model, plan_deployment
from vidur.operator_work import layer_shape, operator_work

# Qwen3-4B's proportions, shrunk: 8 heads of 64 make queries 512 wide on a 256-wide residual.
QWEN3_LIKE = {
    "architectures": ["Qwen3ForCausalLM"],
    "hidden_size": 256,
    "head_dim": 64,
    "intermediate_size": 768,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "num_hidden_layers": 4,
    "vocab_size": 1000,
    "max_position_embeddings": 4096,
    "hidden_act": "silu",
    "tie_word_embeddings": True,
}


def write_config(directory: Path, config: dict[str, object]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_an_explicit_head_dim_is_kept(tmp_path: Path, predictor: OperatorPredictor) -> None:
    model = get_model(str(write_config(tmp_path / "qwen3-tiny", QWEN3_LIKE)))
    assert (model.head_dim, model.q_dim, model.kv_dim) == (64, 512, 256)
    h = 256
    assert model.layer_params == 2 * h * 512 + 2 * h * 256 + 3 * h * 768 + 2 * h
    assert layer_shape(model).head_dim == 64
    flops, _ = operator_work("attn_pre_proj", layer_shape(model), 1, np.array([10.0]))
    assert flops[0] == 2 * 10 * h * (512 + 2 * 256)
    flops, _ = operator_work("attn_post_proj", layer_shape(model), 2, np.array([10.0]))
    assert flops[0] == 2 * 10 * 256 * h

    deployment = plan_deployment(
        DeploymentConfig(replica=ReplicaConfig(model=str(tmp_path / "qwen3-tiny"), tensor_parallel=2)), predictor
    )
    assert deployment.shape.kv_bytes_per_token == 2 * 4 * 2 * 64 * 2
    assert deployment.cost_model.attention.head_dim == 64
    assert deployment.cost_model.build().attention.prefill_work(1, 0).flops == 4 * 4 * 64 * 1

    # Without the key, head_dim is hidden / heads as before.
    derived = dict(QWEN3_LIKE)
    del derived["head_dim"]
    assert get_model(str(write_config(tmp_path / "derived", derived))).head_dim == 32


@pytest.mark.parametrize(
    ("model_type", "hidden_act", "gated"),
    [
        ("llama", "silu", True),
        ("gemma", "gelu_pytorch_tanh", True),  # GeGLU: gate, up and down despite a GELU
        ("gemma2", "gelu_pytorch_tanh", True),
        ("phi", "gelu_new", False),  # up and down only
        ("gpt_neox", "gelu", False),
    ],
)
def test_the_mlp_counts_three_projections_only_when_gated(
    tmp_path: Path, model_type: str, hidden_act: str, gated: bool
) -> None:
    config = dict(QWEN3_LIKE, model_type=model_type, hidden_act=hidden_act)
    model = get_model(str(write_config(tmp_path / model_type, config)))
    assert model.is_gated_mlp is gated
    h = 256
    mlp_params = (3 if gated else 2) * h * 768
    assert model.layer_params == 2 * h * 512 + 2 * h * 256 + mlp_params + 2 * h


@pytest.mark.parametrize("key", ["num_local_experts", "num_experts"])
def test_a_mixture_of_experts_is_refused_naming_the_key(tmp_path: Path, key: str) -> None:
    path = write_config(tmp_path / key, QWEN3_LIKE | {key: 8, "num_experts_per_tok": 2})
    with pytest.raises(ModelConfigError, match=f"mixture of experts \\({key} = 8\\); the simulator models dense"):
        get_model(str(path))
    assert get_model(str(write_config(tmp_path / "dense", QWEN3_LIKE | {key: None}))).num_layers == 4
