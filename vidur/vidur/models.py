"""The model catalogue: transformer shapes of real models, or any Hugging Face `config.json`."""

import json
from dataclasses import dataclass
from pathlib import Path

from vidur.errors import ModelConfigError, UnknownModelError


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A dense decoder-only transformer's shape. `profile_path` names its folder under
    `profiling/compute/<gpu>/` when Vidur's public profiles cover it. `head_dim` is
    `hidden_size / num_q_heads` unless given (Qwen3, Gemma and Mistral-Nemo set their own, so
    the attention width `num_q_heads * head_dim` may differ from `hidden_size`)."""

    name: str
    num_layers: int
    hidden_size: int
    num_q_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    is_gated_mlp: bool = True
    tie_word_embeddings: bool = False
    dtype_bytes: int = 2
    profile_path: str | None = None
    head_dim: int = 0  # 0: hidden_size / num_q_heads

    def __post_init__(self) -> None:
        for field in ("num_layers", "hidden_size", "num_q_heads", "num_kv_heads", "intermediate_size", "vocab_size"):
            if getattr(self, field) < 1:
                raise ModelConfigError(f"model {self.name}: {field} must be at least 1, got {getattr(self, field)}")
        if self.head_dim < 0:
            raise ModelConfigError(f"model {self.name}: head_dim must be positive, got {self.head_dim}")
        if self.head_dim == 0:
            if self.hidden_size % self.num_q_heads:
                raise ModelConfigError(
                    f"model {self.name}: hidden_size {self.hidden_size} is not a multiple of {self.num_q_heads} "
                    "heads (give head_dim)"
                )
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_q_heads)
        if self.num_q_heads % self.num_kv_heads:
            raise ModelConfigError(
                f"model {self.name}: {self.num_q_heads} query heads are not a multiple of {self.num_kv_heads} KV heads"
            )

    @property
    def q_dim(self) -> int:
        """Width of the queries and of the attention output: heads x head_dim."""
        return self.num_q_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def num_mlp_matrices(self) -> int:
        return 3 if self.is_gated_mlp else 2

    @property
    def layer_params(self) -> int:
        """Weights of one transformer layer: attention projections, MLP, two norms."""
        h = self.hidden_size
        attention = 2 * h * self.q_dim + 2 * h * self.kv_dim
        mlp = self.num_mlp_matrices * h * self.intermediate_size
        return attention + mlp + 2 * h

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def num_params(self) -> int:
        lm_head = 0 if self.tie_word_embeddings else self.embedding_params
        return self.num_layers * self.layer_params + self.embedding_params + lm_head + self.hidden_size


def _llama(
    name: str, layers: int, hidden: int, heads: int, kv: int, inter: int, vocab: int, ctx: int, profile: str | None
) -> ModelSpec:
    return ModelSpec(name, layers, hidden, heads, kv, inter, vocab, ctx, profile_path=profile)


CATALOGUE: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _llama("meta-llama/Llama-2-7b-hf", 32, 4096, 32, 32, 11008, 32000, 4096, "meta-llama/Llama-2-7b-hf"),
        _llama("meta-llama/Llama-2-70b-hf", 80, 8192, 64, 8, 28672, 32000, 4096, "meta-llama/Llama-2-70b-hf"),
        _llama("meta-llama/Meta-Llama-3-8B", 32, 4096, 32, 8, 14336, 128256, 8192, "meta-llama/Meta-Llama-3-8B"),
        _llama("meta-llama/Meta-Llama-3-70B", 80, 8192, 64, 8, 28672, 128256, 8192, "meta-llama/Meta-Llama-3-70B"),
        _llama("mistralai/Mistral-7B-v0.1", 32, 4096, 32, 8, 14336, 32000, 32768, None),
        _llama(
            "codellama/CodeLlama-34b-Instruct-hf",
            48,
            8192,
            64,
            8,
            22016,
            32000,
            16384,
            "codellama/CodeLlama-34b-Instruct-hf",
        ),
        _llama("Qwen/Qwen-72B", 80, 8192, 64, 64, 24576, 152064, 32768, "Qwen/Qwen-72B"),
        _llama("internlm/internlm-20b", 60, 5120, 40, 40, 13824, 103168, 4096, "internlm/internlm-20b"),
        ModelSpec(
            "microsoft/phi-2", 32, 2560, 32, 32, 10240, 51200, 2048, is_gated_mlp=False, profile_path="microsoft/phi-2"
        ),
    )
}

ALIASES: dict[str, str] = {
    "llama-2-7b": "meta-llama/Llama-2-7b-hf",
    "llama-2-70b": "meta-llama/Llama-2-70b-hf",
    "llama-3-8b": "meta-llama/Meta-Llama-3-8B",
    "llama-3-70b": "meta-llama/Meta-Llama-3-70B",
    "mistral-7b": "mistralai/Mistral-7B-v0.1",
    "codellama-34b": "codellama/CodeLlama-34b-Instruct-hf",
    "qwen-72b": "Qwen/Qwen-72B",
    "internlm-20b": "internlm/internlm-20b",
    "phi-2": "microsoft/phi-2",
}

_GATED_ACTIVATIONS = ("silu", "swiglu", "swish")
# Families whose MLP is gated with a GELU (GeGLU), so the activation alone does not say it.
_GEGLU_MODEL_TYPES = ("gemma",)
# Keys by which Hugging Face configs declare a mixture of experts (Mixtral, Qwen-MoE, DeepSeek).
_EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")


def model_from_hf_config(config: dict[str, object], name: str) -> ModelSpec:
    """A spec from the fields of a Hugging Face `config.json` (Llama, Mistral, Qwen2/3, Phi, ...).
    The MLP counts as gated (gate, up and down projections) when its activation is SiLU or the
    family is a GeGLU one (Gemma: `model_type` gemma, gemma2, gemma3...); an explicit `head_dim`
    is kept. Mixture-of-experts models are refused: the simulator models dense layers only."""

    def field(*keys: str, default: object = None) -> object:
        for key in keys:
            if key in config:
                return config[key]
        if default is None:
            raise ModelConfigError(f"model config {name} lacks {' / '.join(keys)}")
        return default

    def integer(*keys: str, default: object = None) -> int:
        value = field(*keys, default=default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ModelConfigError(f"model config {name}: {keys[0]} must be an integer, got {value!r}")
        return value

    for key in _EXPERT_KEYS:
        if config.get(key) not in (None, 0, 1):
            raise ModelConfigError(
                f"model config {name} is a mixture of experts ({key} = {config[key]!r}); "
                "the simulator models dense models only"
            )
    heads = integer("num_attention_heads", "n_head")
    head_dim = config.get("head_dim")
    if head_dim is not None and (not isinstance(head_dim, int) or isinstance(head_dim, bool)):
        raise ModelConfigError(f"model config {name}: head_dim must be an integer, got {head_dim!r}")
    activation = str(field("hidden_act", "activation_function", default="silu")).lower()
    geglu = str(config.get("model_type", "")).lower().startswith(_GEGLU_MODEL_TYPES)
    dtype = str(field("torch_dtype", default="bfloat16"))
    return ModelSpec(
        name=name,
        num_layers=integer("num_hidden_layers", "n_layer"),
        hidden_size=integer("hidden_size", "n_embd"),
        num_q_heads=heads,
        num_kv_heads=integer("num_key_value_heads", default=heads),
        intermediate_size=integer("intermediate_size", "n_inner"),
        vocab_size=integer("vocab_size"),
        max_position_embeddings=integer("max_position_embeddings", "n_positions", default=4096),
        is_gated_mlp=activation in _GATED_ACTIVATIONS or geglu,
        tie_word_embeddings=bool(field("tie_word_embeddings", default=False)),
        dtype_bytes=4 if dtype == "float32" else 2,
        head_dim=head_dim or 0,
    )


def _catalogue_model(name: str) -> ModelSpec | None:
    canonical = ALIASES.get(name.lower(), name).lower()
    return next((spec for key, spec in CATALOGUE.items() if key.lower() == canonical), None)


def model_config_path(name_or_path: str) -> Path | None:
    """The `config.json` a model name stands for, or None for a catalogue model (or no file)."""
    if _catalogue_model(name_or_path) is not None:
        return None
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "config.json"
    return path if path.is_file() else None


def get_model(name_or_path: str) -> ModelSpec:
    """A catalogue model by name or alias (case-insensitive), or a Hugging Face `config.json`
    (or a folder holding one)."""
    spec = _catalogue_model(name_or_path)
    if spec is not None:
        return spec
    path = model_config_path(name_or_path)
    if path is not None:
        try:
            config = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ModelConfigError(f"{path} is not valid JSON: {error}") from None
        if not isinstance(config, dict):
            raise ModelConfigError(f"{path} does not hold a JSON object")
        return model_from_hf_config(config, name=str(path.parent.name or path))
    if Path(name_or_path).is_dir():
        raise UnknownModelError(f"{name_or_path} has no config.json (is it a Hugging Face model directory?)")
    known = ", ".join(sorted(ALIASES))
    raise UnknownModelError(
        f"unknown model {name_or_path!r}: use one of {known}, a full name, or a path to a config.json"
    )
