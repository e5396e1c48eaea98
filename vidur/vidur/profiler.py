"""`vidur profile`: time the operators the predictor needs with PyTorch on this machine's device
and write them in Vidur's table format, so a GPU machine can extend or replace the public
profiles (and calibrate attention, which they lack).

    DIR/compute/<device>/<org>/<model>/mlp.csv        the MLP-side operators by token count and TP
    DIR/compute/<device>/<org>/<model>/attention.csv  prefill, decode and KV-write kernels

Each operator runs on one GPU's shard of the layer (weights split `tensor_parallel` ways), as a
tensor-parallel worker would. Attention uses PyTorch's scaled_dot_product_attention on contiguous
keys and values. A prefill chunk after cached context needs an explicit boolean mask (its causal
diagonal is offset by the context), and an explicit `attn_mask` rules out SDPA's FlashAttention
backend: prefills run the memory-efficient kernel (or the math one), slower than the
FlashAttention a serving engine runs. Decodes pass no mask and may use FlashAttention.
"""

import csv
import functools
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidur.models import ModelSpec

STATS = ("min", "max", "mean", "median", "std")
# A word of the CUDA device name -> the catalogue GPU's folder. The L40 is not the L40S (half the
# FLOP/s): it gets a folder of its own.
_GPU_WORDS = {
    "h100": "h100",
    "h200": "h200",
    "a100": "a100",
    "a40": "a40",
    "l40s": "l40s",
    "l40": "l40",
    "l4": "l4",
    "a10g": "a10g",
    "a10": "a10g",
}


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

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {self.repeats} and {self.warmup}")
        if not self.num_tokens or min(self.num_tokens) < 1:
            raise ValueError("num_tokens must list positive token counts")


def profile_folder(cuda_name: str) -> str:
    """The folder for a CUDA device's profiles: the catalogue GPU it is, matched by whole words of
    its name ("NVIDIA L40" is not an L4), else the name itself made a folder name."""
    words = re.findall(r"[a-z0-9]+", cuda_name.lower())
    for word in words:
        folder = _GPU_WORDS.get(word)
        if folder == "h100" and "pcie" in words:
            return "h100_pcie"
        if folder == "a100" and "40gb" in words:
            return "a100_40gb"
        if folder is not None:
            return folder
    return "_".join(words)


def device_name(device: Any) -> str:
    """The folder name of this device's profiles: a catalogue GPU name when recognised."""
    import torch

    if device.type != "cuda":
        return device.type
    return profile_folder(torch.cuda.get_device_name(device))


class _Timer:
    def __init__(self, device: Any, warmup: int, repeats: int) -> None:
        import torch

        self.torch = torch
        self.device = device
        self.warmup = warmup
        self.repeats = repeats

    def milliseconds(self, run: Callable[[], object]) -> list[float]:
        torch = self.torch
        for _ in range(self.warmup):
            run()
        samples = []
        if self.device.type == "cuda":
            for _ in range(self.repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                run()
                end.record()
                end.synchronize()
                samples.append(float(start.elapsed_time(end)))
        else:
            for _ in range(self.repeats):
                began = time.perf_counter()
                run()
                samples.append((time.perf_counter() - began) * 1e3)
        return samples


def _stats(prefix: str, samples: list[float]) -> dict[str, float]:
    return {
        f"time_stats.{prefix}.min": min(samples),
        f"time_stats.{prefix}.max": max(samples),
        f"time_stats.{prefix}.mean": statistics.fmean(samples),
        f"time_stats.{prefix}.median": statistics.median(samples),
        f"time_stats.{prefix}.std": statistics.pstdev(samples),
    }


def _rotate(x: Any, cos: Any, sin: Any) -> Any:
    half = x.shape[-1] // 2
    rotated = x.new_empty(x.shape)
    rotated[..., :half] = -x[..., half:]
    rotated[..., half:] = x[..., :half]
    return x * cos + rotated * sin


def _mlp_operators(model: ModelSpec, tp: int, n: int, device: Any, dtype: Any) -> dict[str, Callable[[], object]]:
    """One callable per operator on one GPU's shard, for `n` tokens."""
    import torch
    import torch.nn.functional as F

    h, d = model.hidden_size, model.head_dim
    q_heads = model.num_q_heads // tp
    kv_heads = max(model.num_kv_heads // tp, 1)
    mlp = model.intermediate_size // tp
    up = 2 * mlp if model.is_gated_mlp else mlp

    def tensor(*shape: int) -> Any:
        return torch.randn(*shape, device=device, dtype=dtype)

    x, residual = tensor(n, h), tensor(n, h)
    norm_weight = tensor(h)
    qkv_weight = tensor((q_heads + 2 * kv_heads) * d, h)
    post_weight, attention_out = tensor(h, q_heads * d), tensor(n, q_heads * d)
    up_weight, down_weight = tensor(up, h), tensor(h, mlp)
    gate_up, activated = tensor(n, up), tensor(n, mlp)
    embedding = tensor(max(model.vocab_size // tp, 1), h)
    token_ids = torch.randint(0, embedding.shape[0], (n,), device=device)
    q, k = tensor(n, q_heads, d), tensor(n, kv_heads, d)
    cos, sin = tensor(n, 1, d), tensor(n, 1, d)

    def norm() -> object:
        if model.is_gated_mlp:
            return F.rms_norm(x, (h,), norm_weight, 1e-5)
        return F.layer_norm(x, (h,), norm_weight)

    def activation() -> object:
        if model.is_gated_mlp:
            gate, value = gate_up.chunk(2, dim=-1)
            return F.silu(gate) * value
        return F.gelu(gate_up, approximate="tanh")

    return {
        "emb": lambda: F.embedding(token_ids, embedding),
        "input_layernorm": norm,
        "attn_pre_proj": lambda: F.linear(x, qkv_weight),
        "attn_rope": lambda: (_rotate(q, cos, sin), _rotate(k, cos, sin)),
        "attn_post_proj": lambda: F.linear(attention_out, post_weight),
        "post_attention_layernorm": norm,
        "mlp_up_proj": lambda: F.linear(x, up_weight),
        "mlp_act": activation,
        "mlp_down_proj": lambda: F.linear(activated, down_weight),
        "add": lambda: x + residual,
    }


def profile_mlp(model: ModelSpec, config: ProfileConfig, device: Any, dtype: Any) -> list[dict[str, object]]:
    import torch

    timer = _Timer(device, config.warmup, config.repeats)
    rows = []
    for tp in config.tensor_parallel:
        for n in config.num_tokens:
            row: dict[str, object] = {}
            with torch.inference_mode():
                for name, run in _mlp_operators(model, tp, n, device, dtype).items():
                    row.update(_stats(name, timer.milliseconds(run)))
            row.update(
                n_head=model.num_q_heads,
                n_kv_head=model.num_kv_heads,
                n_embd=model.hidden_size,
                head_dim=model.head_dim,
                n_expanded_embd=model.intermediate_size,
                vocab_size=model.vocab_size,
                use_gated_mlp=model.is_gated_mlp,
                num_tokens=n,
                num_tensor_parallel_workers=tp,
                dtype=str(dtype).removeprefix("torch."),
            )
            rows.append(row)
    return rows


def profile_attention(model: ModelSpec, config: ProfileConfig, device: Any, dtype: Any) -> list[dict[str, object]]:
    import torch
    import torch.nn.functional as F

    timer = _Timer(device, config.warmup, config.repeats)
    d = model.head_dim
    rows = []
    for tp in config.tensor_parallel:
        q_heads, kv_heads = model.num_q_heads // tp, max(model.num_kv_heads // tp, 1)
        shape = {
            "n_embd": model.hidden_size,
            "n_q_head": q_heads,
            "n_kv_head": kv_heads,
            "head_dim": d,
            "num_tensor_parallel_workers": tp,
            "dtype": str(dtype).removeprefix("torch."),
        }

        def tensor(*dims: int) -> Any:
            return torch.randn(*dims, device=device, dtype=dtype)

        with torch.inference_mode():
            for chunk in config.prefill_chunks:
                for context in config.prefill_contexts:
                    q = tensor(1, q_heads, chunk, d)
                    k, v = tensor(1, kv_heads, context + chunk, d), tensor(1, kv_heads, context + chunk, d)
                    visible = torch.ones(chunk, context + chunk, dtype=torch.bool, device=device).tril(context)
                    samples = timer.milliseconds(
                        functools.partial(F.scaled_dot_product_attention, q, k, v, attn_mask=visible, enable_gqa=True)
                    )
                    cache = tensor(context + chunk, 2 * kv_heads, d)
                    new_kv = tensor(chunk, 2 * kv_heads, d)
                    slots = torch.arange(context, context + chunk, device=device)
                    save = timer.milliseconds(functools.partial(cache.index_copy_, 0, slots, new_kv))
                    rows.append(
                        shape
                        | {"batch_size": 1, "num_tokens": chunk, "kv_cache_size": context, "is_prefill": True}
                        | _stats("attn_prefill", samples)
                        | _stats("attn_kv_cache_save", save)
                    )
            for batch in config.decode_batch_sizes:
                for context in config.decode_contexts:
                    q = tensor(batch, q_heads, 1, d)
                    k, v = tensor(batch, kv_heads, context + 1, d), tensor(batch, kv_heads, context + 1, d)
                    samples = timer.milliseconds(
                        functools.partial(F.scaled_dot_product_attention, q, k, v, enable_gqa=True)
                    )
                    rows.append(
                        shape
                        | {"batch_size": batch, "num_tokens": 1, "kv_cache_size": context, "is_prefill": False}
                        | _stats("attn_decode", samples)
                    )
    return rows


def _write_csv(rows: list[dict[str, object]], path: Path) -> None:
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def profile(model: ModelSpec, config: ProfileConfig, output_dir: Path, device_label: str | None = None) -> Path:
    """Profiles `model` and writes its tables; returns the folder they are in."""
    import torch

    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    for tp in config.tensor_parallel:
        if model.num_q_heads % tp or model.intermediate_size % tp:
            raise ValueError(f"tensor_parallel={tp} does not divide {model.name}'s heads and MLP width")
    model_path = model.profile_path or re.sub(r"[^A-Za-z0-9._-]+", "_", model.name)
    if "/" not in model_path:
        model_path = f"local/{model_path}"
    folder = output_dir / "compute" / (device_label or device_name(device)) / model_path
    _write_csv(profile_mlp(model, config, device, dtype), folder / "mlp.csv")
    if config.attention:
        _write_csv(profile_attention(model, config, device, dtype), folder / "attention.csv")
    return folder
