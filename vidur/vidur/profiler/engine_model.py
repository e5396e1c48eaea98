"""The engine's view of the model being profiled: its `ModelConfig` (from the Hugging Face
config.json when the model is a folder, else built from the catalogue's shape) and the dtype
and device the engine would pick."""

from typing import Any

from vidur.errors import ModelConfigError
from vidur.models import ModelSpec, model_config_path


def engine_model_config(model: ModelSpec, name_or_path: str) -> Any:
    """The engine's config of `model`; raises ModelConfigError for a model the engine cannot run."""
    from engine.model_config import load_model_config, parse_model_config

    if not model.is_gated_mlp:
        raise ModelConfigError(
            f"the engine runs Llama-family models (a gated SwiGLU MLP); {model.name} has a plain MLP"
        )
    path = model_config_path(name_or_path)
    try:
        if path is not None:
            return load_model_config(path.parent)
        return parse_model_config(
            {
                "architectures": ["LlamaForCausalLM"],
                "vocab_size": model.vocab_size,
                "hidden_size": model.hidden_size,
                "intermediate_size": model.intermediate_size,
                "num_hidden_layers": model.num_layers,
                "num_attention_heads": model.num_q_heads,
                "num_key_value_heads": model.num_kv_heads,
                "head_dim": model.head_dim,
                "max_position_embeddings": model.max_position_embeddings,
                "tie_word_embeddings": model.tie_word_embeddings,
            }
        )
    except ValueError as error:
        raise ModelConfigError(f"the engine cannot run {model.name}: {error}") from None


def engine_dtype(requested: str, config: Any, device: Any) -> Any:
    """The dtype `python -m engine --dtype <requested>` runs on `device`."""
    from engine.worker.model.loader import resolve_dtype

    return resolve_dtype(requested, config, device)
