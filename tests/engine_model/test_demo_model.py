"""The demo model directory: complete, deterministic, loadable by the runner and by transformers."""

import hashlib
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from engine.demo_model import build_demo_model, default_demo_model_dir
from engine.worker.model_runner import ModelRunner, ModelRunnerConfig

FILES = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]


def digest(model_dir: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(model_dir.iterdir())}


def test_same_arguments_same_bytes(tmp_path: Path) -> None:
    shape = dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1, vocab_size=700)
    first = build_demo_model(tmp_path / "a", **shape)
    second = build_demo_model(tmp_path / "b", **shape)
    assert sorted(path.name for path in first.iterdir()) == FILES
    assert digest(first) == digest(second)
    assert digest(build_demo_model(tmp_path / "c", **shape, seed=1)) != digest(first)


def test_tokenizer_fills_the_vocabulary_and_round_trips(tmp_path: Path) -> None:
    model_dir = build_demo_model(tmp_path, hidden_size=32, intermediate_size=64, num_layers=1, vocab_size=4000)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    assert tokenizer.get_vocab_size() == 4000  # the corpus gives fewer merges; reserved tokens fill the rest
    text = "Serving models quickly: batching, caching — and naïve émojis 🚀."
    encoding = tokenizer.encode(text)
    assert encoding.ids[0] == tokenizer.token_to_id("<s>")
    assert tokenizer.decode(encoding.ids) == text
    last = tokenizer.id_to_token(3999)
    assert last.startswith("<|reserved_") and tokenizer.decode([3999], skip_special_tokens=False) == last
    assert tokenizer.decode([3999]) == ""  # special, as Llama 3's reserved tokens


def test_transformers_reads_the_tokenizer_and_chat_template(tiny_llama: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    prompt = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert prompt == "<s><|system|>\nBe brief.</s>\n<|user|>\nHi there</s>\n<|assistant|>\n"
    assert tokenizer.eos_token_id == 1


def test_default_demo_model_is_built_once(tmp_path: Path) -> None:
    model_dir = default_demo_model_dir(tmp_path)
    built = digest(model_dir)
    assert default_demo_model_dir(tmp_path) == model_dir
    assert digest(model_dir) == built
    assert [path.name for path in tmp_path.iterdir()] == [model_dir.name]  # no staging directory left
    runner = ModelRunner(ModelRunnerConfig(model=str(model_dir)))
    info = runner.model_info
    assert (info.architecture, info.num_layers, info.hidden_size, info.num_kv_heads) == ("LlamaForCausalLM", 4, 256, 2)
    assert (info.vocab_size, info.eos_token_ids, info.max_model_len, info.dtype) == (2048, (1,), 2048, "float32")


def test_bad_shapes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="architecture must be one of"):
        build_demo_model(tmp_path, architecture="GPT2LMHeadModel")
    with pytest.raises(ValueError, match="vocab_size must be at least 300"):
        build_demo_model(tmp_path, vocab_size=100)
