"""Bad configs, bad checkpoints and inconsistent steps each raise a clear ValueError; a rejected
step leaves every request as it was."""

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from engine.model_config import load_model_config, parse_model_config
from engine.worker.model_runner import ModelRunner, ModelRunnerConfig
from engine.wire.sampling_params import SamplingParams
from engine.wire.step import NewRequest, StepEntry, StepInput

from harness import GREEDY, hf_greedy, random_prompts

LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "vocab_size": 100,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"architectures": ["GPT2LMHeadModel"]}, "unsupported architectures ['GPT2LMHeadModel']"),
        ({"hidden_act": "gelu"}, "unsupported hidden_act 'gelu'"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "unsupported rope scaling type 'yarn'"),
        ({"rope_scaling": {"type": "linear", "factor": 0.5}}, "rope scaling factor must be at least 1"),
        ({"num_key_value_heads": 3}, "num_attention_heads (4) must be a multiple of num_key_value_heads (3)"),
        ({"num_hidden_layers": "2"}, "config.json needs an integer 'num_hidden_layers', got '2'"),
        ({"quantization_config": {"quant_method": "awq"}}, "unsupported quantization_config"),
        ({"eos_token_id": 100}, "eos_token_id 100 is outside the vocabulary (size 100)"),
        ({"torch_dtype": "float8"}, "torch_dtype must be one of"),
    ],
)
def test_bad_config(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_model_config({**LLAMA, **changes})
    assert message in str(error.value)


def test_config_formats(tmp_path: Path) -> None:
    llama3 = {
        **LLAMA,
        "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192},
        "eos_token_id": [1, 2],
    }
    config = parse_model_config(llama3, {"eos_token_id": 3})
    assert (config.rope.type, config.rope.theta, config.rope.factor) == ("llama3", 500000.0, 8.0)
    assert config.eos_token_ids == (3,)  # generation_config.json wins
    # transformers 5 writes rope_parameters instead of rope_theta + rope_scaling.
    v5 = {**LLAMA, "rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000.0}}
    assert parse_model_config(v5).rope.theta == 1000.0
    with pytest.raises(ValueError, match="has no config.json"):
        load_model_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        load_model_config(tmp_path)


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"device": "tpu"}, "device must be one of ('auto', 'cpu', 'cuda'), got 'tpu'"),
        ({"dtype": "float8"}, "dtype must be 'auto' or one of"),
        ({"attention_backend": "xformers"}, "attention_backend must be one of"),
        ({"block_size": 0}, "block_size must be at least 1, got 0"),
        ({"num_kv_blocks": 0}, "num_kv_blocks must be at least 1, got 0"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization must be in (0, 1]"),
        ({"kv_cache_memory_gib": -1.0}, "kv_cache_memory_gib must be positive"),
        ({"tensor_parallel_size": 2, "distributed_init_method": "env://"}, "must be a tcp:// or file:// URL"),
    ],
)
def test_bad_runner_config(knobs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as error:
        ModelRunnerConfig(model="unused", **knobs)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"max_model_len": 4096}, "max_model_len 4096 exceeds the model's max_position_embeddings (2048)"),
        ({"tensor_parallel_size": 3}, "num_attention_heads (4) is not divisible by tensor parallel size 3"),
        ({"device": "cuda"}, "CUDA is not available"),
        ({"attention_backend": "flash"}, "'flash' cannot run: it runs on CUDA only"),
    ],
)
def test_runner_rejects_what_the_model_cannot_do(tiny_llama: Path, knobs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as error:
        ModelRunner(ModelRunnerConfig(model=str(tiny_llama), **knobs))
    assert message in str(error.value)


def copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def rewrite_weights(model_dir: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    weights = load_file(model_dir / "model.safetensors")
    edit(weights)
    save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})


def test_bad_checkpoints(tiny_llama: Path, tmp_path: Path) -> None:
    def load(model_dir: Path) -> None:
        ModelRunner(ModelRunnerConfig(model=str(model_dir)))

    missing = copy_model(tiny_llama, tmp_path / "missing")
    rewrite_weights(missing, lambda w: w.pop("model.layers.1.self_attn.k_proj.weight"))
    with pytest.raises(
        ValueError,
        match=r"the checkpoint lacks 1 weights, e.g. \['model.layers.1.self_attn.qkv_proj.weight \(parts \[1\]\)'\]",
    ):
        load(missing)

    wrong_shape = copy_model(tiny_llama, tmp_path / "shape")
    rewrite_weights(wrong_shape, lambda w: w.update({"model.norm.weight": w["model.norm.weight"][:10]}))
    with pytest.raises(ValueError, match=r"checkpoint tensor model.norm.weight has shape \[10\], expected \[64\]"):
        load(wrong_shape)

    unknown = copy_model(tiny_llama, tmp_path / "unknown")
    rewrite_weights(
        unknown, lambda w: w.update({"model.layers.0.mlp.extra_proj.weight": w["model.norm.weight"].clone()})
    )
    with pytest.raises(ValueError, match="model.layers.0.mlp.extra_proj.weight has no place in LlamaForCausalLM"):
        load(unknown)

    no_weights = copy_model(tiny_llama, tmp_path / "none")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"holds no \*.safetensors weights"):
        load(no_weights)

    bad_index = copy_model(tiny_llama, tmp_path / "index")
    index = {"weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors"}}
    (bad_index / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"lists shards that do not exist: \['model-00002-of-00002.safetensors'\]"):
        load(bad_index)


def entry(request_id: int, num_tokens: int, computed: int, blocks: list[int], produces: bool = True) -> StepEntry:
    """Request r sits in slot r - 1."""
    return StepEntry(request_id, request_id - 1, num_tokens, computed, produces, blocks)


def step(
    step_id: int,
    entries: list[StepEntry],
    new: list[NewRequest] | None = None,
    *,
    preempted: list[tuple[int, int]] | None = None,
    finished_ids: list[int] | None = None,
) -> StepInput:
    return StepInput.from_entries(step_id, entries, new or [], preempted=preempted or [], finished_ids=finished_ids or [])


def test_bad_steps_leave_requests_intact(tiny_llama: Path) -> None:
    """Request 1 runs by hand with block size 4; every bad step is refused and its decode goes on unharmed."""
    prompt = random_prompts(9, [6], 512)[0]
    expected = hf_greedy(tiny_llama, [prompt], 6)[0]
    runner = ModelRunner(ModelRunnerConfig(model=str(tiny_llama), block_size=4))
    with pytest.raises(ValueError, match=r"call init_kv_cache\(\) first"):
        runner.execute(step(0, []))
    runner.init_kv_cache(8)
    first = runner.execute(step(0, [entry(1, 6, 0, [3, 5])], [NewRequest(1, prompt, GREEDY)]))
    tokens = np.frombuffer(first.sampled_token_ids, dtype="<u4").tolist()

    def good_decode(extra_blocks: list[int]) -> StepEntry:
        return entry(1, 1, len(prompt) + len(tokens) - 1, extra_blocks)

    bad_steps: list[tuple[StepInput, str]] = [
        (step(1, [entry(2, 1, 0, [0])]), "entry of unknown request 2"),
        (step(1, [], finished_ids=[7]), "finished request 7 is unknown"),
        (step(1, [], preempted=[(7, 1)]), "preempted request 7 is unknown"),
        (step(1, [], preempted=[(1, 99)]), "preempted request 1 keeps 99 tokens"),
        (step(1, [good_decode([]), entry(1, 1, 6, [])]), "a request or slot appears twice"),
        (step(1, [entry(1, 3, 5, [])]), "(tokens 5..8, holding 7 tokens and 2 blocks) runs past the tokens it has"),
        (step(1, [entry(1, 1, 3, [])]), "samples a token before its last one"),
        (step(1, [good_decode([])], preempted=[(1, 7)]), "holding 7 tokens and 0 blocks) writes past the blocks"),
        (step(1, [good_decode([8])]), "block 8 is outside the KV cache (0..7)"),
        (step(1, [entry(1, 0, 6, [])]), "runs no tokens"),
        (
            step(1, [good_decode([]), entry(2, 2, 0, [0])], [NewRequest(2, [1, 600], GREEDY)]),
            "new request 2 has token id 600 outside the vocabulary (size 512)",
        ),
        (step(1, [entry(2, 1, 0, [0])], [NewRequest(2, [], GREEDY)]), "new request 2 has an empty prompt"),
        (step(1, [entry(1, 1, 6, [])], [NewRequest(1, [5], GREEDY)]), "a new request is already known"),
        (
            step(1, [entry(2, 1, 0, [0])], [NewRequest(2, [5], SamplingParams(top_p=0.0))]),
            "new request 2: top_p must be in (0, 1]",
        ),
        (step(1, [entry(2, 1, 0, [0])], [NewRequest(2, [5] * 2049, GREEDY)]), "more than max_model_len (2048)"),
        (step(1, [], [NewRequest(2, [5], GREEDY)]), "new_requests do not match the entries flagged new"),
    ]
    for bad, message in bad_steps:
        with pytest.raises(ValueError) as error:
            runner.execute(bad)
        assert message in str(error.value)
        assert runner.requests is not None and list(runner.requests.row_of_id) == [1]

    step_id = 1
    while len(tokens) < len(expected):
        total = len(prompt) + len(tokens)  # tokens known; the last one is fed now at position total - 1
        new_blocks = [6] if total == 9 else []
        output = runner.execute(step(step_id, [good_decode(new_blocks)]))
        tokens += np.frombuffer(output.sampled_token_ids, dtype="<u4").tolist()
        step_id += 1
    assert tokens == expected
