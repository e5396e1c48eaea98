"""`vidur profile`: time what the engine runs, on this machine's device, and write it in Vidur's
table format with the device's measured spec, so `--gpu <the device's folder>` simulates this
device (a GPU, or this machine's CPU) with the engine's own operator times.

    DIR/compute/<device>/device.json                  the device's spec (see `device_spec`)
    DIR/compute/<device>/<org>/<model>/mlp.csv        the layer's MLP-side operators by tokens and TP
    DIR/compute/<device>/<org>/<model>/attention.csv  attention through the engine's backend

The operators are the engine's own modules (`engine_layers`) on one tensor-parallel rank's
shard, at the dtype `python -m engine --dtype` would run, each timed where it runs in passes
through all the layers; attention is the engine's backend (`--attention-backend`, as in the
engine) over its paged KV cache (`engine_attention`), timed inside those passes too.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidur.models import ModelSpec
from vidur.profiler.device_spec import device_name, measure_device, profile_folder, write_device_spec
from vidur.profiler.engine_attention import AttentionCall, AttentionStep, EngineAttention
from vidur.profiler.engine_layers import LayerStack
from vidur.profiler.engine_model import engine_dtype, engine_model_config
from vidur.profiler.tables import write_csv
from vidur.profiler.timer import Timer, time_stats

__all__ = ["ProfileConfig", "device_name", "profile", "profile_folder"]


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    num_tokens: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
    tensor_parallel: tuple[int, ...] = (1,)
    warmup: int = 3
    repeats: int = 10
    attention: bool = True
    prefill_chunks: tuple[int, ...] = (64, 256, 512, 1024, 2048)
    prefill_contexts: tuple[int, ...] = (0, 1024, 4096)
    decode_batch_sizes: tuple[int, ...] = (1, 8, 32, 128)
    decode_contexts: tuple[int, ...] = (128, 1024, 4096)
    device: str | None = None
    dtype: str = "auto"
    attention_backend: str = "auto"
    block_size: int = 16
    device_spec: bool = True

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {self.repeats} and {self.warmup}")
        for name in ("num_tokens", "tensor_parallel", "prefill_chunks", "decode_batch_sizes"):
            values = getattr(self, name)
            if not values or min(values) < 1:
                raise ValueError(f"{name} must list positive numbers, got {values}")
        for name in ("prefill_contexts", "decode_contexts"):
            if min(getattr(self, name), default=0) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.block_size < 1:
            raise ValueError(f"block_size must be at least 1, got {self.block_size}")


def _shape_columns(config: Any, dtype: Any) -> dict[str, object]:
    return {
        "n_head": config.num_heads,
        "n_kv_head": config.num_kv_heads,
        "n_embd": config.hidden_size,
        "head_dim": config.head_dim,
        "n_expanded_embd": config.intermediate_size,
        "vocab_size": config.vocab_size,
        "use_gated_mlp": True,
        "dtype": str(dtype).removeprefix("torch."),
    }


def profile_mlp(config: Any, profile_config: ProfileConfig, device: Any, dtype: Any) -> list[dict[str, object]]:
    timer = Timer(device, profile_config.warmup, profile_config.repeats)
    rows = []
    for tp in profile_config.tensor_parallel:
        stack = LayerStack(config, tp, device, dtype)
        for n in profile_config.num_tokens:
            row: dict[str, object] = {}
            for name, samples in stack.time(n, timer).items():
                row.update(time_stats(name, samples))
            row.update(_shape_columns(config, dtype), num_tokens=n, num_tensor_parallel_workers=tp)
            rows.append(row)
    return rows


def _attention_row(
    attention: EngineAttention, call: AttentionCall, samples: dict[str, list[float]], tp: int, dtype: Any,
    hidden_size: int,
) -> dict[str, object]:
    kernel = "attn_prefill" if call.num_tokens > 1 else "attn_decode"
    saves = samples["kv_save"]
    save_median = sorted(saves)[len(saves) // 2]
    # The backend's call less its own write: floored at a hundredth of it, against timing noise.
    attend = [max(forward - save_median, forward / 100) for forward in samples["attention"]]
    return {
        "n_embd": hidden_size,
        "n_q_head": attention.num_heads,
        "n_kv_head": attention.num_kv_heads,
        "head_dim": attention.head_dim,
        "num_tensor_parallel_workers": tp,
        "dtype": str(dtype).removeprefix("torch."),
        "attention_backend": attention.backend_name,
        "block_size": attention.block_size,
        "batch_size": call.num_seqs,
        "num_tokens": call.num_tokens,
        "kv_cache_size": call.num_context,
        "is_prefill": call.num_tokens > 1,
    } | time_stats(kernel, attend) | time_stats("attn_kv_cache_save", saves)


def profile_attention(
    config: Any, profile_config: ProfileConfig, device: Any, dtype: Any
) -> list[dict[str, object]]:
    timer = Timer(device, profile_config.warmup, profile_config.repeats)
    rows = []
    for tp in profile_config.tensor_parallel:
        stack = LayerStack(config, tp, device, dtype)
        attention = EngineAttention(
            config, tp, profile_config.attention_backend, profile_config.block_size, device, dtype
        )
        calls = [
            AttentionCall(1, chunk, context)
            for chunk in profile_config.prefill_chunks
            for context in profile_config.prefill_contexts
        ] + [
            AttentionCall(batch, 1, context)
            for batch in profile_config.decode_batch_sizes
            for context in profile_config.decode_contexts
        ]
        for call in calls:
            samples = stack.time(call.num_seqs * call.num_tokens, timer, AttentionStep(attention, call))
            rows.append(_attention_row(attention, call, samples, tp, dtype, config.hidden_size))
    return rows


def profile(
    model: ModelSpec,
    config: ProfileConfig,
    output_dir: Path,
    device_label: str | None = None,
    model_name_or_path: str | None = None,
) -> Path:
    """Profiles `model` as the engine runs it and writes its tables (and the device's spec);
    returns the folder of the tables."""
    import torch

    engine_config = engine_model_config(model, model_name_or_path or model.name)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = engine_dtype(config.dtype, engine_config, device)
    for tp in config.tensor_parallel:
        engine_config.check_tensor_parallel(tp)
    model_path = model.profile_path or re.sub(r"[^A-Za-z0-9._-]+", "_", model.name)
    if "/" not in model_path:
        model_path = f"local/{model_path}"
    device_folder = output_dir / "compute" / (device_label or device_name(device))
    folder = device_folder / model_path
    if config.device_spec:
        write_device_spec(measure_device(device, dtype, device_folder.name), device_folder)
    write_csv(profile_mlp(engine_config, config, device, dtype), folder / "mlp.csv")
    if config.attention:
        write_csv(profile_attention(engine_config, config, device, dtype), folder / "attention.csv")
    return folder
