"""The Llama-family decoder (Llama 2/3, Mistral, Qwen2) over one step's flattened tokens.

A step mixes prefill chunks and decodes of many requests; their tokens are concatenated into
one sequence and every token carries its own position. Only attention needs to know which
request a token belongs to, and it learns that from the step's attention metadata.

Module names follow the Hugging Face checkpoints, except that q/k/v and gate/up are fused
(`qkv_proj`, `gate_up_proj`); `checkpoint_target` maps a checkpoint name to its place here.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from engine.worker.attention import AttentionBackend, AttentionLayer, TritonAttention
from engine.model_config import ModelConfig, RopeConfig
from engine.worker.model.layers.linear import QKVParallelLinear, RowParallelLinear
from engine.worker.model.layers.mlp import GatedMLP
from engine.worker.model.layers.norm import RMSNorm
from engine.worker.model.layers.rotary import RotaryEmbedding, RotaryLayer, Rotation
from engine.worker.model.layers.vocab import ParallelLMHead, VocabParallelEmbedding
from engine.worker.model.parallel import PipelineStage, TensorParallel

FUSED_CHECKPOINT_NAMES = {
    "q_proj": ("qkv_proj", 0),
    "k_proj": ("qkv_proj", 1),
    "v_proj": ("qkv_proj", 2),
    "gate_proj": ("gate_up_proj", 0),
    "up_proj": ("gate_up_proj", 1),
}


@dataclass(frozen=True, slots=True)
class LayerKinds:
    """Which implementation of the norms, the MLP and rotary embedding a model is built with."""

    norm: type[RMSNorm]
    mlp: type[GatedMLP]
    rotary: Callable[[int, int, RopeConfig], RotaryLayer]


PLAIN_LAYERS = LayerKinds(RMSNorm, GatedMLP, RotaryEmbedding)


def layer_kinds_for(backend: AttentionBackend[Any]) -> LayerKinds:
    """The triton backend's model runs the fused Triton layers (its kernels run wherever it
    does); every other backend's the plain PyTorch ones."""
    if not isinstance(backend, TritonAttention):
        return PLAIN_LAYERS
    from engine.worker.model.layers.fused import FusedGatedMLP, FusedRMSNorm, FusedRotaryEmbedding

    return LayerKinds(FusedRMSNorm, FusedGatedMLP, FusedRotaryEmbedding)


@dataclass(frozen=True, slots=True)
class StepContext:
    """What every layer needs for one step besides the hidden states."""

    rotation: Rotation
    """The attention backend's per-step preparation (see `AttentionBackend.prepare`)."""
    attention: Any


class LlamaAttention(nn.Module):
    def __init__(self, config: ModelConfig, layer_index: int, backend: AttentionBackend[Any], tp: TensorParallel):
        super().__init__()
        self.qkv_proj = QKVParallelLinear(
            config.hidden_size, config.head_dim, config.num_heads, config.num_kv_heads, bias=config.qkv_bias, tp=tp
        )
        self.o_proj = RowParallelLinear(
            config.num_heads * config.head_dim, config.hidden_size, bias=config.o_proj_bias, tp=tp
        )
        self.backend = backend
        self.layer = AttentionLayer(
            num_heads=self.qkv_proj.num_local_heads,
            num_kv_heads=self.qkv_proj.num_local_kv_heads,
            head_dim=config.head_dim,
            scale=config.head_dim**-0.5,
            sliding_window=config.sliding_windows[layer_index],
        )
        self.split_sizes = [
            self.layer.num_heads * config.head_dim,
            self.layer.num_kv_heads * config.head_dim,
            self.layer.num_kv_heads * config.head_dim,
        ]

    def forward(self, hidden: torch.Tensor, step: StepContext, kv_cache: torch.Tensor) -> torch.Tensor:
        num_tokens = hidden.shape[0]
        query, key, value = self.qkv_proj(hidden).split(self.split_sizes, dim=-1)
        query = query.view(num_tokens, self.layer.num_heads, self.layer.head_dim)
        key = key.view(num_tokens, self.layer.num_kv_heads, self.layer.head_dim)
        value = value.view(num_tokens, self.layer.num_kv_heads, self.layer.head_dim)
        query, key = step.rotation.apply(query, key)
        attended = self.backend.forward(query, key, value, kv_cache, step.attention, self.layer)
        return self.o_proj(attended.view(num_tokens, -1))


class LlamaDecoderLayer(nn.Module):
    def __init__(
        self,
        config: ModelConfig,
        layer_index: int,
        backend: AttentionBackend[Any],
        tp: TensorParallel,
        kinds: LayerKinds,
    ):
        super().__init__()
        self.self_attn = LlamaAttention(config, layer_index, backend, tp)
        self.mlp = kinds.mlp(config.hidden_size, config.intermediate_size, bias=config.mlp_bias, tp=tp)
        self.input_layernorm = kinds.norm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = kinds.norm(config.hidden_size, config.rms_norm_eps)

    def forward(
        self, hidden: torch.Tensor, residual: torch.Tensor | None, step: StepContext, kv_cache: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, residual = self.input_layernorm(hidden, residual)
        hidden = self.self_attn(hidden, step, kv_cache)
        hidden, residual = self.post_attention_layernorm(hidden, residual)
        return self.mlp(hidden), residual


class LlamaModel(nn.Module):
    """One pipeline stage's part of the decoder: its layers (the others are `nn.Identity`
    placeholders, so checkpoint names keep their layer index), the embedding on the first
    stage, the final norm on the last."""

    def __init__(
        self,
        config: ModelConfig,
        backend: AttentionBackend[Any],
        tp: TensorParallel,
        max_positions: int,
        stage: PipelineStage,
    ):
        super().__init__()
        self.stage = stage
        kinds = layer_kinds_for(backend)
        self.embed_tokens = (
            VocabParallelEmbedding(config.vocab_size, config.hidden_size, tp=tp) if stage.is_first else None
        )
        layers: list[nn.Module] = [
            LlamaDecoderLayer(config, i, backend, tp, kinds) if stage.holds_layer(i) else nn.Identity()
            for i in range(config.num_layers)
        ]
        self.local_layers = [layer for layer in layers if isinstance(layer, LlamaDecoderLayer)]
        self.attention_layers = tuple(layer.self_attn.layer for layer in self.local_layers)
        self.layers = nn.ModuleList(layers)
        self.norm = kinds.norm(config.hidden_size, config.rms_norm_eps) if stage.is_last else None
        self.rotary_emb = kinds.rotary(config.head_dim, max_positions, config.rope)

    def forward(
        self,
        token_ids: torch.Tensor | None,
        positions: torch.Tensor,
        kv_caches: Sequence[torch.Tensor],
        attention: Any,
        hidden: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The first stage embeds `token_ids`; a later one continues from the previous stage's
        `hidden` (its residual stream). The last stage returns normalized final hidden states,
        the others the residual stream to hand on."""
        if self.embed_tokens is not None:
            assert token_ids is not None
            hidden = self.embed_tokens(token_ids)
        assert hidden is not None
        step = StepContext(self.rotary_emb.rotation(positions, hidden.dtype), attention)
        residual = None
        for layer, kv_cache in zip(self.local_layers, kv_caches, strict=True):
            hidden, residual = layer(hidden, residual, step, kv_cache)
        if self.norm is not None:
            hidden, _ = self.norm(hidden, residual)
            return hidden
        # What the next stage's first norm adds up itself: one tensor to hand on, not two.
        return hidden if residual is None else hidden + residual


class LlamaForCausalLM(nn.Module):
    def __init__(
        self,
        config: ModelConfig,
        backend: AttentionBackend[Any],
        tp: TensorParallel,
        max_positions: int,
        stage: PipelineStage | None = None,
    ) -> None:
        super().__init__()
        stage = stage or PipelineStage.of(0, 1, config.num_layers)
        self.config = config
        self.stage = stage
        self.model = LlamaModel(config, backend, tp, max_positions, stage)
        # With one stage a tied head shares the embedding; a last stage of several has no
        # embedding, so it loads the embedding's weights into a head of its own.
        tied = self.model.embed_tokens if config.tie_word_embeddings else None
        self.lm_head = ParallelLMHead(config.vocab_size, config.hidden_size, tp=tp, tied_to=tied) if stage.is_last else None
        self.attention_layers = self.model.attention_layers

    @property
    def shares_embedding_with_head(self) -> bool:
        return self.config.tie_word_embeddings and self.stage.is_first and self.stage.is_last

    def forward(
        self,
        token_ids: torch.Tensor | None,
        positions: torch.Tensor,
        kv_caches: Sequence[torch.Tensor],
        attention: Any,
        hidden: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """On the last stage the final hidden states of every token, `[num_tokens, hidden_size]`;
        on the others the residual stream for the next stage (see `LlamaModel.forward`)."""
        return self.model(token_ids, positions, kv_caches, attention, hidden)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Full-vocabulary logits on every rank of the last stage, `[num_rows, vocab_size]`."""
        assert self.lm_head is not None, "only the last pipeline stage computes logits"
        return self.lm_head(hidden)

    def checkpoint_target(self, name: str) -> tuple[str, str, int | None] | None:
        """(module path, parameter name, shard id) where checkpoint tensor `name` goes; None: not
        needed on this stage."""
        if name.endswith("rotary_emb.inv_freq"):
            return None
        stage = self.stage
        if name.startswith("model.layers."):
            if not stage.holds_layer(int(name.split(".")[2])):
                return None
        elif name.startswith("model.embed_tokens."):
            if not stage.is_first:
                tied_head = self.config.tie_word_embeddings and stage.is_last
                return ("lm_head", name.rpartition(".")[2], None) if tied_head else None
        elif name.startswith("model.norm."):
            if not stage.is_last:
                return None
        elif name.startswith("lm_head."):
            if not stage.is_last or self.config.tie_word_embeddings:
                return None
        module_path, _, param_name = name.rpartition(".")
        parent, _, leaf = module_path.rpartition(".")
        if leaf in FUSED_CHECKPOINT_NAMES:
            fused, shard_id = FUSED_CHECKPOINT_NAMES[leaf]
            return f"{parent}.{fused}", param_name, shard_id
        return module_path, param_name, None
