"""A complete Hugging Face model directory with fixed-seed random weights, built locally.

`build_demo_model(path, **shape)` writes `config.json`, `generation_config.json`, the weights
(`model.safetensors`, or shards with `model.safetensors.index.json`), and a byte-level BPE
`tokenizer.json` trained on an embedded text with a simple chat template in
`tokenizer_config.json`. No download and no transformers: the engine loads it exactly as it
loads a real checkpoint. The same arguments always give the same bytes.

`default_demo_model_dir()` builds the default demo model once into a cache directory, in a
child process: PyTorch (which writes the weights) never enters the caller's process, so the
engine process of `python -m engine` stays free of it.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from engine.demo_corpus import DEMO_CORPUS
from engine.model_config import ARCHITECTURES, parse_model_config

if TYPE_CHECKING:
    import torch

BOS, EOS = "<s>", "</s>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{{ message['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
MODEL_TYPES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2"}
DTYPES = ("float32", "float16", "bfloat16")
# Bump when the builder's output changes, so cached demo models are rebuilt.
BUILDER_VERSION = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoModelShape:
    architecture: str = "LlamaForCausalLM"
    vocab_size: int = 2048
    hidden_size: int = 256
    intermediate_size: int = 768
    num_layers: int = 4
    num_heads: int = 8
    num_kv_heads: int = 2
    head_dim: int | None = None
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    sliding_window: int | None = None
    dtype: str = "float32"
    num_shards: int = 1
    seed: int = 0
    extra_config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        if self.num_shards < 1:
            raise ValueError(f"num_shards must be at least 1, got {self.num_shards}")
        if self.vocab_size < 300:
            raise ValueError(f"vocab_size must be at least 300 (256 bytes + special tokens), got {self.vocab_size}")


def build_demo_model(path: str | Path, **shape: Any) -> Path:
    """Writes a model directory at `path` (created if needed); `shape` overrides `DemoModelShape`."""
    demo = DemoModelShape(**shape)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(demo.vocab_size)
    tokenizer.save(str(path / "tokenizer.json"))
    bos_id, eos_id = _token_id(tokenizer, BOS), _token_id(tokenizer, EOS)
    config = _config_json(demo, bos_id, eos_id)
    parse_model_config(config)
    _write_json(path / "config.json", config)
    _write_json(path / "generation_config.json", {"bos_token_id": bos_id, "eos_token_id": eos_id})
    _write_json(
        path / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": BOS,
            "eos_token": EOS,
            "chat_template": CHAT_TEMPLATE,
            "model_max_length": demo.max_position_embeddings,
            "clean_up_tokenization_spaces": False,
        },
    )
    _write_weights(path, _random_weights(demo), demo.num_shards)
    return path


def default_demo_model_dir(cache_dir: str | Path | None = None) -> Path:
    """The default demo model, built on first use under `cache_dir` (default ~/.cache/servekit)."""
    root = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "servekit"
    shape = DemoModelShape()
    fingerprint = hashlib.sha256(json.dumps([BUILDER_VERSION, asdict(shape)], sort_keys=True).encode()).hexdigest()[:12]
    target = root / f"demo-llama-{fingerprint}"
    if (target / "config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-building-", dir=root))
    try:
        code = "import sys; from engine.demo_model import build_demo_model; build_demo_model(sys.argv[1])"
        subprocess.run([sys.executable, "-c", code, str(staging)], check=True)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_tokenizer(vocab_size: int) -> Tokenizer:
    """Byte-level BPE trained on the embedded text, exactly `vocab_size` tokens: when the text
    yields fewer merges, `<|reserved_N|>` tokens fill the rest (as Llama 3 does)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(DEMO_CORPUS.splitlines(), trainer)
    missing = vocab_size - tokenizer.get_vocab_size()
    if missing > 0:
        tokenizer.add_special_tokens([AddedToken(f"<|reserved_{i}|>", special=True) for i in range(missing)])
    bos_id = _token_id(tokenizer, BOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return tokenizer


def _token_id(tokenizer: Tokenizer, token: str) -> int:
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise ValueError(f"the demo tokenizer lacks {token!r}")
    return token_id


def _config_json(demo: DemoModelShape, bos_id: int, eos_id: int) -> dict[str, Any]:
    config: dict[str, Any] = {
        "architectures": [demo.architecture],
        "model_type": MODEL_TYPES[demo.architecture],
        "vocab_size": demo.vocab_size,
        "hidden_size": demo.hidden_size,
        "intermediate_size": demo.intermediate_size,
        "num_hidden_layers": demo.num_layers,
        "num_attention_heads": demo.num_heads,
        "num_key_value_heads": demo.num_kv_heads,
        "hidden_act": "silu",
        "max_position_embeddings": demo.max_position_embeddings,
        "rms_norm_eps": demo.rms_norm_eps,
        "rope_theta": demo.rope_theta,
        "tie_word_embeddings": demo.tie_word_embeddings,
        "torch_dtype": demo.dtype,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
    }
    if demo.head_dim is not None:
        config["head_dim"] = demo.head_dim
    if demo.rope_scaling is not None:
        config["rope_scaling"] = demo.rope_scaling
    if demo.architecture == "MistralForCausalLM":
        config["sliding_window"] = demo.sliding_window
    if demo.architecture == "Qwen2ForCausalLM":
        config["use_sliding_window"] = demo.sliding_window is not None
        config["sliding_window"] = demo.sliding_window
        config["max_window_layers"] = demo.num_layers // 2
    config.update(demo.extra_config)
    return config


def _random_weights(demo: DemoModelShape) -> "dict[str, torch.Tensor]":
    """Fixed-seed weights scaled so activations stay O(1) and logits are well spread (clear argmaxes)."""
    import torch

    generator = torch.Generator().manual_seed(demo.seed)
    dtype = getattr(torch, demo.dtype)
    head_dim = demo.head_dim or demo.hidden_size // demo.num_heads
    hidden, inner = demo.hidden_size, demo.intermediate_size
    q_size, kv_size = demo.num_heads * head_dim, demo.num_kv_heads * head_dim
    qkv_bias = demo.architecture == "Qwen2ForCausalLM"

    def normal(*shape: int, std: float) -> torch.Tensor:
        return (torch.randn(*shape, generator=generator) * std).to(dtype)

    def norm_weight() -> torch.Tensor:
        return (1.0 + 0.1 * torch.randn(hidden, generator=generator)).to(dtype)

    weights = {"model.embed_tokens.weight": normal(demo.vocab_size, hidden, std=1.0)}
    for i in range(demo.num_layers):
        prefix = f"model.layers.{i}"
        weights[f"{prefix}.input_layernorm.weight"] = norm_weight()
        weights[f"{prefix}.self_attn.q_proj.weight"] = normal(q_size, hidden, std=hidden**-0.5)
        weights[f"{prefix}.self_attn.k_proj.weight"] = normal(kv_size, hidden, std=hidden**-0.5)
        weights[f"{prefix}.self_attn.v_proj.weight"] = normal(kv_size, hidden, std=hidden**-0.5)
        if qkv_bias:
            weights[f"{prefix}.self_attn.q_proj.bias"] = normal(q_size, std=0.1)
            weights[f"{prefix}.self_attn.k_proj.bias"] = normal(kv_size, std=0.1)
            weights[f"{prefix}.self_attn.v_proj.bias"] = normal(kv_size, std=0.1)
        weights[f"{prefix}.self_attn.o_proj.weight"] = normal(hidden, q_size, std=q_size**-0.5)
        weights[f"{prefix}.post_attention_layernorm.weight"] = norm_weight()
        weights[f"{prefix}.mlp.gate_proj.weight"] = normal(inner, hidden, std=hidden**-0.5)
        weights[f"{prefix}.mlp.up_proj.weight"] = normal(inner, hidden, std=hidden**-0.5)
        weights[f"{prefix}.mlp.down_proj.weight"] = normal(hidden, inner, std=inner**-0.5)
    weights["model.norm.weight"] = norm_weight()
    if not demo.tie_word_embeddings:
        weights["lm_head.weight"] = normal(demo.vocab_size, hidden, std=2.0 * hidden**-0.5)
    return weights


def _write_weights(path: Path, weights: "dict[str, torch.Tensor]", num_shards: int) -> None:
    from safetensors.torch import save_file

    metadata = {"format": "pt"}
    if num_shards == 1:
        save_file(weights, str(path / "model.safetensors"), metadata=metadata)
        return
    names = list(weights)
    weight_map = {}
    for shard in range(num_shards):
        file_name = f"model-{shard + 1:05d}-of-{num_shards:05d}.safetensors"
        shard_names = names[shard::num_shards]
        save_file({name: weights[name] for name in shard_names}, str(path / file_name), metadata=metadata)
        weight_map.update({name: file_name for name in shard_names})
    total_size = sum(tensor.numel() * tensor.element_size() for tensor in weights.values())
    _write_json(
        path / "model.safetensors.index.json", {"metadata": {"total_size": total_size}, "weight_map": weight_map}
    )


def _write_json(path: Path, value: dict[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
