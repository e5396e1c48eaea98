"""The model runner's configuration, and what it reports about the loaded model.

Plain data without torch, so the engine process can build a config, send it to its workers and
read their `ModelInfo` back without importing PyTorch.
"""

from dataclasses import asdict, dataclass
from typing import Any

from engine.scheduler import SchedulerConfig

SCHEDULER_DEFAULTS = SchedulerConfig()

ATTENTION_BACKENDS = ("auto", "reference", "sdpa", "flash", "triton")
DEVICES = ("auto", "cpu", "cuda")
# Accepted dtype names, each with the torch dtype it means.
DTYPE_ALIASES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRunnerConfig:
    """`model`: a Hugging Face model directory. `dtype`: `auto` (float32 on the CPU, the
    checkpoint's on a GPU, float16 for bfloat16 on a GPU older than compute capability 8.0),
    `float32`, `float16` or `bfloat16`. `max_model_len`: None takes the model's
    `max_position_embeddings`.

    KV capacity: `num_kv_blocks` when given; otherwise on the CPU `kv_cache_memory_gib` (1 GiB
    when None), on a GPU what a profiled step of `token_budget` tokens over
    `max_num_seqs` requests, each at the end of a `max_model_len` context, leaves of
    `gpu_memory_utilization` of the device's memory. `block_size`, `token_budget` and
    `max_num_seqs` must be the scheduler's (the engine takes them from its `SchedulerConfig`);
    their defaults are the scheduler core's.

    `enforce_eager`: run every step eagerly. Otherwise, on CUDA with one pipeline stage and an
    attention backend whose decode can be captured, decode-only steps replay CUDA graphs
    captured at start-up (see `engine.worker.cuda_graphs`); the CPU always runs eagerly.
    """

    model: str
    dtype: str = "auto"
    device: str = "cpu"
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    max_model_len: int | None = None
    block_size: int = SCHEDULER_DEFAULTS.block_size
    num_kv_blocks: int | None = None
    kv_cache_memory_gib: float | None = None
    gpu_memory_utilization: float = 0.9
    attention_backend: str = "auto"
    token_budget: int = SCHEDULER_DEFAULTS.token_budget
    max_num_seqs: int = SCHEDULER_DEFAULTS.max_num_seqs
    enforce_eager: bool = False
    distributed_init_method: str = "tcp://127.0.0.1:29511"
    seed: int = 0

    @property
    def num_processes(self) -> int:
        """One worker process per tensor-parallel rank of each pipeline stage."""
        return self.tensor_parallel_size * self.pipeline_parallel_size

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.dtype != "auto" and self.dtype not in DTYPE_ALIASES:
            raise ValueError(f"dtype must be 'auto' or one of {sorted(DTYPE_ALIASES)}, got {self.dtype!r}")
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attention_backend must be one of {ATTENTION_BACKENDS}, got {self.attention_backend!r}")
        positive = dict(
            tensor_parallel_size=self.tensor_parallel_size,
            pipeline_parallel_size=self.pipeline_parallel_size,
            block_size=self.block_size,
            token_budget=self.token_budget,
            max_num_seqs=self.max_num_seqs,
        )
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ValueError(f"max_model_len must be at least 1, got {self.max_model_len}")
        if self.num_kv_blocks is not None and self.num_kv_blocks < 1:
            raise ValueError(f"num_kv_blocks must be at least 1, got {self.num_kv_blocks}")
        if self.kv_cache_memory_gib is not None and not self.kv_cache_memory_gib > 0:
            raise ValueError(f"kv_cache_memory_gib must be positive, got {self.kv_cache_memory_gib}")
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.num_processes > 1 and not self.distributed_init_method.startswith(("tcp://", "file://")):
            raise ValueError(
                f"distributed_init_method must be a tcp:// or file:// URL, got {self.distributed_init_method!r}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelInfo:
    """What the engine needs to know about the loaded model (plain values, safe to send)."""

    architecture: str
    vocab_size: int
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]
    max_model_len: int
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    dtype: str
    device: str
    tensor_parallel_size: int
    pipeline_parallel_size: int
    block_size: int
    attention_backend: str
    """Bytes one KV block takes on one rank (its stage's layers, keys and values)."""
    kv_cache_bytes_per_block: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
