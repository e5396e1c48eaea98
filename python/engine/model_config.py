"""A Hugging Face model directory's `config.json` (and `generation_config.json`), reduced to what
the decoder needs, validated once.

Supported: `LlamaForCausalLM` (Llama 2 and 3, GQA, rope scaling `linear` and `llama3`),
`MistralForCausalLM` (sliding window) and `Qwen2ForCausalLM` (qkv bias, per-layer sliding window,
tied embeddings). Anything else raises ValueError naming the unsupported option.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")
ROPE_TYPES = ("default", "linear", "llama3")
DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True, slots=True, kw_only=True)
class RopeConfig:
    """Rotary embedding: `theta` is the base; `type` is `default`, `linear` or `llama3`."""

    theta: float = 10000.0
    type: str = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    max_position_embeddings: int
    rope: RopeConfig
    qkv_bias: bool
    o_proj_bias: bool
    mlp_bias: bool
    tie_word_embeddings: bool
    """Per layer: the attention window (a query sees this many keys, itself included) or None."""
    sliding_windows: tuple[int | None, ...]
    """The checkpoint's dtype name (`float32`, `float16`, `bfloat16`), or None when not given."""
    torch_dtype: str | None
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        positive = dict(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads,
            head_dim=self.head_dim,
            max_position_embeddings=self.max_position_embeddings,
        )
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_kv_heads})"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        if len(self.sliding_windows) != self.num_layers:
            raise ValueError(f"sliding_windows has {len(self.sliding_windows)} entries for {self.num_layers} layers")
        for window in self.sliding_windows:
            if window is not None and window < 1:
                raise ValueError(f"sliding_window must be at least 1, got {window}")
        for token in self.eos_token_ids:
            if not 0 <= token < self.vocab_size:
                raise ValueError(f"eos_token_id {token} is outside the vocabulary (size {self.vocab_size})")
        if self.torch_dtype is not None and self.torch_dtype not in DTYPES:
            raise ValueError(f"torch_dtype must be one of {DTYPES}, got {self.torch_dtype!r}")

    def check_tensor_parallel(self, size: int) -> None:
        """Raises ValueError when the model cannot be split over `size` ranks."""
        if self.num_heads % size:
            raise ValueError(f"num_attention_heads ({self.num_heads}) is not divisible by tensor parallel size {size}")
        if self.num_kv_heads % size and size % self.num_kv_heads:
            raise ValueError(
                f"num_key_value_heads ({self.num_kv_heads}) and tensor parallel size ({size}) must divide one another"
            )
        if self.intermediate_size % size:
            raise ValueError(
                f"intermediate_size ({self.intermediate_size}) is not divisible by tensor parallel size {size}"
            )


def load_model_config(model_dir: str | Path) -> ModelConfig:
    """Reads `model_dir/config.json` (and `generation_config.json` for EOS ids when present)."""
    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{model_dir} has no config.json (is it a Hugging Face model directory?)")
    raw = _read_json(config_path)
    generation_path = model_dir / "generation_config.json"
    generation = _read_json(generation_path) if generation_path.is_file() else {}
    return parse_model_config(raw, generation)


def parse_model_config(raw: dict[str, Any], generation: dict[str, Any] | None = None) -> ModelConfig:
    architectures = raw.get("architectures") or []
    if len(architectures) != 1 or architectures[0] not in ARCHITECTURES:
        raise ValueError(f"unsupported architectures {architectures!r}: expected one of {ARCHITECTURES}")
    architecture = architectures[0]
    activation = raw.get("hidden_act", "silu")
    if activation != "silu":
        raise ValueError(f"unsupported hidden_act {activation!r}: only 'silu' (SwiGLU) is implemented")
    for flag in ("quantization_config", "pretraining_tp"):
        value = raw.get(flag)
        if flag == "pretraining_tp" and value in (None, 1):
            continue
        if value is not None:
            raise ValueError(f"unsupported {flag} {value!r}")

    num_layers = _int(raw, "num_hidden_layers")
    num_heads = _int(raw, "num_attention_heads")
    hidden_size = _int(raw, "hidden_size")
    num_kv_heads = raw.get("num_key_value_heads") or num_heads
    head_dim = raw.get("head_dim") or hidden_size // num_heads
    max_position_embeddings = _int(raw, "max_position_embeddings")
    attention_bias = bool(raw.get("attention_bias", False))
    is_qwen2 = architecture == "Qwen2ForCausalLM"
    return ModelConfig(
        architecture=architecture,
        vocab_size=_int(raw, "vocab_size"),
        hidden_size=hidden_size,
        intermediate_size=_int(raw, "intermediate_size"),
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=int(num_kv_heads),
        head_dim=int(head_dim),
        rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
        max_position_embeddings=max_position_embeddings,
        rope=_parse_rope(raw, max_position_embeddings),
        qkv_bias=True if is_qwen2 else attention_bias,
        o_proj_bias=False if is_qwen2 else attention_bias,
        mlp_bias=bool(raw.get("mlp_bias", False)),
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        sliding_windows=_parse_sliding_windows(raw, architecture, num_layers),
        torch_dtype=raw.get("torch_dtype") or raw.get("dtype"),
        bos_token_id=raw.get("bos_token_id"),
        eos_token_ids=_parse_eos(raw, generation or {}),
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return value


def _int(raw: dict[str, Any], key: str) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"config.json needs an integer {key!r}, got {value!r}")
    return value


def _parse_rope(raw: dict[str, Any], max_position_embeddings: int) -> RopeConfig:
    # Transformers 4 writes `rope_theta` + `rope_scaling`; transformers 5 writes `rope_parameters`.
    scaling = raw.get("rope_scaling") or raw.get("rope_parameters") or {}
    if not isinstance(scaling, dict):
        raise ValueError(f"rope_scaling must be an object, got {scaling!r}")
    theta = float(scaling.get("rope_theta", raw.get("rope_theta", 10000.0)))
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type not in ROPE_TYPES:
        raise ValueError(f"unsupported rope scaling type {rope_type!r}: expected one of {ROPE_TYPES}")
    if raw.get("partial_rotary_factor", scaling.get("partial_rotary_factor", 1.0)) != 1.0:
        raise ValueError("unsupported partial_rotary_factor: only full rotary embeddings are implemented")
    if rope_type == "default":
        return RopeConfig(theta=theta)
    factor = float(scaling.get("factor", 0.0))
    if factor < 1.0:
        raise ValueError(f"rope scaling factor must be at least 1, got {factor}")
    if rope_type == "linear":
        return RopeConfig(theta=theta, type="linear", factor=factor)
    low = float(scaling.get("low_freq_factor", 1.0))
    high = float(scaling.get("high_freq_factor", 4.0))
    if high <= low:
        raise ValueError(f"llama3 rope: high_freq_factor ({high}) must exceed low_freq_factor ({low})")
    return RopeConfig(
        theta=theta,
        type="llama3",
        factor=factor,
        low_freq_factor=low,
        high_freq_factor=high,
        original_max_position_embeddings=int(scaling.get("original_max_position_embeddings", max_position_embeddings)),
    )


def _parse_sliding_windows(raw: dict[str, Any], architecture: str, num_layers: int) -> tuple[int | None, ...]:
    window = raw.get("sliding_window")
    if architecture == "MistralForCausalLM":
        return (window,) * num_layers
    if architecture == "Qwen2ForCausalLM" and raw.get("use_sliding_window", False) and window is not None:
        layer_types = raw.get("layer_types")
        if layer_types is None:
            first_windowed = raw.get("max_window_layers", 28)
            return tuple(window if i >= first_windowed else None for i in range(num_layers))
        if len(layer_types) != num_layers:
            raise ValueError(f"layer_types has {len(layer_types)} entries for {num_layers} layers")
        return tuple(window if kind == "sliding_attention" else None for kind in layer_types)
    return (None,) * num_layers


def _parse_eos(raw: dict[str, Any], generation: dict[str, Any]) -> tuple[int, ...]:
    eos = generation.get("eos_token_id", raw.get("eos_token_id"))
    if eos is None:
        return ()
    if isinstance(eos, int):
        return (eos,)
    if isinstance(eos, list) and all(isinstance(token, int) for token in eos):
        return tuple(eos)
    raise ValueError(f"eos_token_id must be an integer or a list of integers, got {eos!r}")
