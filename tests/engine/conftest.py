from collections.abc import Iterator
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from support.engine_server import RunningServer, start_server

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Serving language models fast: prefill chunks ride along with decodes.",
    "héllo wörld, ça va? naïve café crème brûlée",
    "世界你好，模型服务。日本語のテキスト。",
    "emoji 🙂🚀 and symbols ∑∫√ mixed in",
] * 20


@pytest.fixture(scope="session")
def byte_level_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small byte-level BPE tokenizer trained here, saved in the Hugging Face layout."""
    directory = tmp_path_factory.mktemp("tokenizer")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<s>", "</s>"],
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(
        '{"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true,'
        ' "chat_template": "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\\n{% endfor %}'
        '{% if add_generation_prompt %}<|assistant|>{% endif %}"}'
    )
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model's architecture at a small size, random weights, local tokenizer."""
    from engine.demo_model import build_demo_model

    directory = tmp_path_factory.mktemp("tiny-model")
    build_demo_model(directory)
    return directory


@pytest.fixture(scope="session")
def server(tiny_model_dir: Path) -> Iterator[RunningServer]:
    """One engine serving the tiny model for the tests that do not break it."""
    running = start_server(tiny_model_dir, "--num-kv-blocks", "512", "--max-num-seqs", "64", "--token-budget", "256")
    yield running
    running.stop()
